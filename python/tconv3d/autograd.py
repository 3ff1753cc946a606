"""The layer's derivatives in Python: ConvTranspose3dFunction, the public
autograd.Function for code that composes them, and the Functions that
torch.func transforms and forward-mode AD run, since neither can run the
operators' C++ autograd Function (csrc/op_registration.cpp holds the same
formulas).  Outside those, conv_transpose3d and ConvTranspose3d call the
operators directly: their C++ autograd costs less host time a call."""
import torch
from torch.autograd import forward_ad

from . import _ops

try:  # private: a torch that moves it must not break the import
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
except ImportError:  # test_nested_forward_mode_raises then fails, and says so
    retrieve_all_functorch_interpreters = list


# Private too: without it, torch.func transforms meet the C++ autograd's error.
_functorch_transforms_active = getattr(torch._C, "_are_functorch_transforms_active",
                                       lambda: False)


def python_autograd_needed() -> bool:
    """Whether a torch.func transform (grad, vmap, jvp, ...) or forward-mode AD
    (torch.autograd.forward_ad) is active: neither can run the operators' C++
    autograd Function; ConvTranspose3dFunction serves both."""
    return _functorch_transforms_active() or getattr(forward_ad, "_current_level", -1) >= 0


def _refuse_nested_forward_mode():
    # An autograd.Function's jvp runs unseen by an outer forward-mode level,
    # so jvp of jvp (jacfwd of jacfwd) would drop the second-order term and
    # return zeros in its place (pytorch/pytorch#197867): refuse instead.
    interpreters = retrieve_all_functorch_interpreters()
    if sum(str(i.key()).endswith("Jvp") for i in interpreters) > 1:
        raise RuntimeError(
            "tconv3d: nested forward-mode derivatives (jvp of jvp, jacfwd of jacfwd) are not "
            "supported: PyTorch runs a custom autograd.Function's jvp outside the outer "
            "forward-mode level, which would drop the second-order term. Use reverse mode for "
            "the inner or outer derivative (jacfwd(jacrev(f)), torch.func.hessian).")


class _Static:
    """A call's non-tensor arguments as one opaque object: the vmap rules
    torch.func generates flatten lists into leaves, and nested transforms
    (hessian: vmap over jvp over vjp) then miscount them."""

    def __init__(self, geometry, size=None):
        self.geometry, self.size = tuple(geometry), None if size is None else list(size)

    def sized(self, size):
        return _Static(self.geometry, size)


def _sum_of(terms):
    present = [t for t in terms if t is not None]
    return None if not present else sum(present[1:], present[0])


def _forward_grads(needs, grad_output, input, weight, static):
    """The forward's (gx, gw, gb) through the Python Functions (any order,
    any torch.func transform)."""
    gx = gw = gb = None
    if needs[0]:
        gx = _GradInputFunction.apply(grad_output, weight, static.sized(input.shape))
    if needs[1]:
        gw = _GradWeightFunction.apply(grad_output, input, static.sized(weight.shape))
    if needs[2]:  # channels: dimension 1, or 0 unbatched
        channel = grad_output.dim() - 4
        gb = grad_output.sum([d for d in range(grad_output.dim()) if d != channel])
    return gx, gw, gb


def _forward_jvp(t_input, t_weight, t_bias, input, weight, static, output_shape):
    # Bilinear in (input, weight), plus the bias.
    apply = _ForwardFunction.apply
    return _sum_of([None if t_input is None else apply(t_input, weight, None, static),
                    None if t_weight is None else apply(input, t_weight, None, static),
                    None if t_bias is None else t_bias.view(-1, 1, 1, 1).expand(output_shape)])


def _save(ctx, output, input, weight, static):
    if output.dtype != input.dtype:
        # The operator ran under autocast (its C++ Autocast kernel cast the
        # operands): backward needs them in the dtype the forward used.
        input, weight = input.to(output.dtype), weight.to(output.dtype)
    ctx.save_for_backward(input, weight)
    ctx.save_for_forward(input, weight)
    ctx.static, ctx.output_shape = static, output.shape


class ConvTranspose3dFunction(torch.autograd.Function):
    """The layer as a Python autograd.Function, for code that composes them.
    In backward it computes only the gradients ctx.needs_input_grad asks for,
    with the differentiable tconv3d operators, so double backward works; under
    torch.func transforms and forward-mode AD it works as conv_transpose3d
    does there (_ForwardFunction's derivatives).  conv_transpose3d does not go
    through it: outside those, the operators carry their own C++ autograd,
    which costs less host time per call."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, stride, padding, output_padding, groups, dilation):
        return _ops.forward(input, weight, bias, stride, padding, output_padding, groups, dilation)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _save(ctx, output, inputs[0], inputs[1], _Static(inputs[3:8]))

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        geometry = ctx.static.geometry
        gx = gw = gb = None
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        if python_autograd_needed():
            # grad_output as it comes: vmap cannot copy it channels-last, so
            # here the results take the operators' own formats.
            return (*_forward_grads(ctx.needs_input_grad, grad_output, input, weight, ctx.static),
                    None, None, None, None, None)
        if needs_input or needs_weight:  # in the forward's format, as the C++ backward
            grad_output = _ops.grad_output_in_results_format(grad_output, input, weight)
        if needs_input and needs_weight:
            gx, gw, gb = _ops.backward(grad_output, input, weight, *geometry, needs_bias)
            gb = gb if needs_bias else None
        elif needs_input:
            gx = _ops.grad_input(grad_output, weight, list(input.shape), *geometry)
            gb = _ops.grad_bias(grad_output) if needs_bias else None
        elif needs_weight and needs_bias:
            gw, gb = _ops.grad_weight_and_bias(grad_output, input, list(weight.shape), *geometry)
        elif needs_weight:
            gw = _ops.grad_weight(grad_output, input, list(weight.shape), *geometry)
        elif needs_bias:
            gb = _ops.grad_bias(grad_output)
        return gx, gw, gb, None, None, None, None, None

    @staticmethod
    def jvp(ctx, t_input, t_weight, t_bias, *_):
        _refuse_nested_forward_mode()
        input, weight = ctx.saved_tensors
        return _forward_jvp(t_input, t_weight, t_bias, input, weight, ctx.static, ctx.output_shape)


# Under torch.func transforms and forward-mode AD, which cannot run the
# operators' C++ autograd Function: the three operators as Python Functions
# whose derivatives are one another (op_registration.cpp's formulas).

class _ForwardFunction(torch.autograd.Function):
    """y = forward(x, w, b)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, static):
        return _ops.forward(input, weight, bias, *static.geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _save(ctx, output, inputs[0], inputs[1], inputs[3])

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        return (*_forward_grads(ctx.needs_input_grad, grad_output, input, weight, ctx.static),
                None)

    @staticmethod
    def jvp(ctx, t_input, t_weight, t_bias, _):
        _refuse_nested_forward_mode()
        input, weight = ctx.saved_tensors
        return _forward_jvp(t_input, t_weight, t_bias, input, weight, ctx.static, ctx.output_shape)


class _BilinearFunction(torch.autograd.Function):
    """grad_input and grad_weight: each linear in each of its two tensors,
    which it keeps for backward and jvp, with the call's _Static third."""

    generate_vmap_rule = True

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])
        ctx.save_for_forward(inputs[0], inputs[1])
        ctx.static = inputs[2]


def _bilinear_jvp(apply, ctx, t_a, t_b):
    _refuse_nested_forward_mode()
    a, b = ctx.saved_tensors
    return _sum_of([None if t_a is None else apply(t_a, b, ctx.static),
                    None if t_b is None else apply(a, t_b, ctx.static)])


class _GradInputFunction(_BilinearFunction):
    """gx = grad_input(gy, w), static.size = x's shape."""

    @staticmethod
    def forward(grad_output, weight, static):
        return _ops.grad_input(grad_output, weight, static.size, *static.geometry)

    @staticmethod
    def backward(ctx, ggx):
        grad_output, weight = ctx.saved_tensors
        d_gy = d_w = None
        if ctx.needs_input_grad[0]:
            d_gy = _ForwardFunction.apply(ggx, weight, None, ctx.static)
        if ctx.needs_input_grad[1]:
            d_w = _GradWeightFunction.apply(grad_output, ggx, ctx.static.sized(weight.shape))
        return d_gy, d_w, None

    @staticmethod
    def jvp(ctx, t_gy, t_w, _):
        return _bilinear_jvp(_GradInputFunction.apply, ctx, t_gy, t_w)


class _GradWeightFunction(_BilinearFunction):
    """gw = grad_weight(gy, x), static.size = w's shape."""

    @staticmethod
    def forward(grad_output, input, static):
        return _ops.grad_weight(grad_output, input, static.size, *static.geometry)

    @staticmethod
    def backward(ctx, ggw):
        grad_output, input = ctx.saved_tensors
        d_gy = d_x = None
        if ctx.needs_input_grad[0]:
            d_gy = _ForwardFunction.apply(input, ggw, None, ctx.static)
        if ctx.needs_input_grad[1]:
            d_x = _GradInputFunction.apply(grad_output, ggw, ctx.static.sized(input.shape))
        return d_gy, d_x, None

    @staticmethod
    def jvp(ctx, t_gy, t_x, _):
        return _bilinear_jvp(_GradWeightFunction.apply, ctx, t_gy, t_x)


def forward_under_torch_func(input, weight, bias, stride, padding, output_padding, groups,
                             dilation):
    """The forward where python_autograd_needed(): the Python Functions'
    derivatives instead of the operators' C++ ones."""
    return _ForwardFunction.apply(input, weight, bias,
                                  _Static((stride, padding, output_padding, groups, dilation)))

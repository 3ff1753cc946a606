"""Configurations for the parity sweep: odd sizes, anisotropic everything."""

# name: (N, Cin, Cout, groups, input DHW, kernel, stride, padding, output_padding, dilation, bias)
CONFIGS = {
    "k3s1": (2, 3, 5, 1, (4, 5, 3), 3, 1, 0, 0, 1, True),
    "k3s1p1_batch1": (1, 4, 3, 1, (5, 3, 4), 3, 1, 1, 0, 1, False),
    "k2s2_unet": (2, 6, 4, 1, (3, 4, 5), 2, 2, 0, 0, 1, True),
    "k4s2p1_vae": (2, 5, 3, 1, (3, 4, 3), 4, 2, 1, 0, 1, True),
    "k3s2p1op1_vae": (1, 4, 6, 1, (4, 3, 5), 3, 2, 1, 1, 1, True),
    "aniso_kernel_135": (2, 3, 4, 1, (3, 5, 4), (1, 3, 5), (1, 2, 1), (0, 1, 2), (0, 1, 0), 1, True),
    "aniso_stride_123": (2, 4, 3, 1, (3, 4, 3), (2, 3, 5), (1, 2, 3), (0, 1, 2), (0, 1, 2), 1, False),
    "dilated": (2, 3, 4, 1, (4, 3, 5), 3, (2, 2, 1), (1, 0, 2), (1, 0, 0), (2, 1, 3), True),
    "stride_gt_kernel": (2, 3, 2, 1, (3, 4, 2), (1, 2, 1), (3, 3, 2), 0, (2, 1, 1), 1, True),
    "phases_without_taps": (1, 2, 3, 1, (4, 3, 3), 3, 4, 1, (3, 0, 1), 2, True),
    "large_padding": (2, 3, 3, 1, (5, 6, 4), 5, 3, 4, 2, 2, True),
    "groups2": (2, 4, 6, 2, (3, 4, 3), 3, 2, 1, 1, 1, True),
    "groups3_k2s2": (2, 6, 9, 3, (3, 3, 4), 2, 2, 0, 0, 1, False),
    "depthwise": (2, 5, 5, 5, (4, 3, 4), 3, 2, 1, 1, 1, True),
    "depthwise_multiplier": (1, 3, 6, 3, (3, 4, 3), (3, 1, 2), (2, 1, 2), (1, 0, 0), (1, 0, 1), 1, True),
    "k7s1p3": (1, 2, 3, 1, (3, 4, 3), 7, 1, 3, 0, 1, True),
    "rgb_like": (4, 3, 8, 1, (3, 3, 3), 3, 2, 1, 1, 1, True),
}


def geometry_of(config):
    _, _, _, groups, _, _, stride, padding, output_padding, dilation, _ = config
    return dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                dilation=dilation)


def shapes_of(config):
    n, cin, cout, groups, size, kernel, *_ = config
    kernel = (kernel,) * 3 if isinstance(kernel, int) else kernel
    return (n, cin, *size), (cin, cout // groups, *kernel), cout


def widen(config, min_channels_per_group=9):
    """The same geometry with channels scaled until both Cin/G and Cout/G reach
    `min_channels_per_group` (odd counts: partial tensor-core tiles)."""
    n, cin, cout, groups, *rest = config
    per_group = min(cin // groups, cout // groups)
    factor = -(-min_channels_per_group // per_group)
    return (n, cin * factor, cout * factor, groups, *rest)


# Shapes for the tensor-core kernels: the sweep widened to Cin/G, Cout/G >= 9,
# several M tiles, a partial second N tile, K not a multiple of the K tile.
TENSOR_CORE_CONFIGS = {f"{name}_wide": widen(config) for name, config in CONFIGS.items()}
TENSOR_CORE_CONFIGS.update({
    "many_m_tiles": (2, 16, 24, 1, (9, 10, 11), 3, 2, 1, 1, 1, True),
    "partial_n_tile": (1, 40, 72, 1, (5, 6, 7), (2, 3, 2), (2, 1, 2), (0, 1, 0), (1, 0, 0), 1, True),
    "grouped_wide_k": (1, 48, 32, 2, (4, 5, 6), 5, 1, 2, 0, 1, False),
    # Narrow groups: forced onto tensor cores, mostly-empty tiles must stay exact.
    "rgb_in_narrow": (2, 3, 16, 1, (4, 5, 3), 3, 2, 1, 1, 1, True),
    "rgb_out_narrow": (2, 24, 3, 1, (3, 4, 5), 4, 2, 1, 0, 1, True),
    "depthwise_narrow": (2, 6, 6, 6, (4, 3, 5), 3, 2, 1, 1, 1, True),
    "single_input_channel": (1, 1, 9, 1, (5, 4, 3), 2, 2, 0, 0, 1, False),
    # 33-64 columns: the Hopper GEMM's 64-wide tile (forward, then grad-input).
    "columns_48": (1, 24, 48, 1, (5, 4, 6), 3, 2, 1, 1, 1, True),
    "input_columns_56": (2, 56, 16, 1, (4, 3, 5), (2, 3, 3), (2, 1, 2), (0, 1, 1), (1, 0, 1), 1, False),
    # 64 taps in one phase (stride 1, kernel 4): K walks 64 taps.
    "mask_64_taps": (1, 16, 40, 1, (5, 6, 4), 4, 1, 1, 0, 1, True),
})

# The Hopper GEMM's TMA loader: a group's channels on the source side
# (forward Cin/G, grad-input Cout/G) whole 128-byte rows or exactly one row of
# 64 or 32 bytes (32 or 16 fp16/bf16 channels, 16 or 8 fp32; 2 or 4 taps a
# stage, tap counts that leave the last stage part padding), row boxes cut by
# odd extents, element strides 2-8, phases without taps, and its fallbacks.
TMA_CONFIGS = {
    "vae_k3s2p1op1": (2, 64, 64, 1, (5, 6, 7), 3, 2, 1, 1, 1, True),
    "k4s2p1_two_groups": (1, 128, 128, 2, (4, 5, 3), 4, 2, 1, 0, 1, False),
    "aniso_dilated": (2, 64, 128, 1, (3, 5, 4), (3, 2, 3), (3, 1, 2), (1, 0, 2), (2, 0, 1),
                      (2, 1, 1), True),
    # Forward 192 channels (three 64-channel stages a tap), stride 1, many boxes.
    "channels_192_many_tiles": (2, 192, 64, 1, (9, 10, 11), 3, 1, 1, 0, 1, True),
    # Stride 8: grad-input's element stride 8; 56 of 64 forward phases without taps.
    "stride_8": (1, 64, 64, 1, (3, 2, 3), 2, 8, 0, 3, 1, False),
    # 72 output channels: forward columns a partial 128-wide tile; grad-input's
    # 72 channels are not whole rows, so it keeps the cp.async loader.
    "columns_72": (1, 64, 72, 1, (4, 3, 5), 3, 2, 1, 0, 1, True),
    # Stride 9: past TMA's element strides (grad-input) and the phase table (forward).
    "stride_9": (1, 64, 64, 1, (2, 3, 2), 3, (9, 1, 1), 1, 0, 1, False),
    # 32 channels: whole 128-byte rows in TF32, one 64-byte row in fp16/bf16.
    "channels_32": (2, 32, 32, 1, (6, 5, 7), 3, 1, 1, 0, 1, True),
    # 16 channels: 32-byte rows (64 in TF32); 16 columns, half a 32-wide tile.
    "channels_16_columns_16": (2, 16, 16, 1, (6, 5, 7), 3, 1, 1, 0, 1, True),
    # Dilated 32 -> 32, stride 1: taps reaching past every face.
    "dilated_32": (1, 32, 32, 1, (5, 6, 4), 3, 1, (2, 1, 3), 0, (2, 1, 3), False),
    # 16 channels per group of 4: each box reads its group's 32 bytes of a position.
    "groups_4_of_16": (2, 64, 64, 4, (4, 5, 6), 3, 2, 1, 1, 1, True),
    # 32 -> 16, stride 2: forward 64-byte rows over 16 columns, grad-input
    # 32-byte rows at element stride 2 over 32 columns.
    "channels_32_to_16": (2, 32, 16, 1, (5, 4, 6), 4, 2, 1, 0, 1, True),
    # 8 channels per group: 32-byte rows in TF32 (fp16/bf16's 16 bytes keep
    # the cp.async loader).
    "groups_2_of_8": (2, 16, 16, 2, (5, 6, 7), 3, 2, 1, 1, 1, True),
    # Narrow rows at element strides 8, 4, 2 (grad-input) and 64 phases, most
    # without taps (forward).
    "narrow_stride_8": (1, 16, 32, 1, (3, 2, 3), 2, (8, 4, 2), 0, (3, 1, 1), 1, False),
    # 16 channels over many boxes, a partial 64-wide column tile.
    "channels_16_many_tiles": (2, 16, 48, 1, (9, 10, 11), 3, 1, 1, 0, 1, True),
    # 15 taps (kernel 3 x 1 x 5, stride 1): narrow stages hold 2 (64-byte
    # rows: fp16/bf16 forward, TF32 grad-input) or 4 taps (32-byte rows:
    # fp16/bf16 grad-input), so each tile's last stage is part padding.
    "taps_15_padded_stage": (2, 32, 16, 1, (5, 4, 6), (3, 1, 5), 1, (1, 0, 2), 0, 1, False),
    # One tap (kernel 1): a tile is one stage, all of it but the tap padding
    # (except TF32 grad-input's 128-byte rows).
    "one_tap": (2, 16, 32, 1, (5, 6, 7), 1, 1, 0, 0, 1, True),
    # Grad-input's merged w taps (fp16/bf16, 32 output channels, one group,
    # w of stride 2 with an even kernel, padding and extent, undilated): the
    # U-Net k2s2 64 -> 32 layer at odd sizes; k4s2 with padding 2 along w
    # (pairs starting left of the tensor); beside a dilated and a stride-1
    # axis; an odd output extent along w (unmerged: 64-byte rows, two taps a
    # stage).
    "unet_k2s2_merged": (2, 48, 32, 1, (5, 6, 7), 2, 2, 0, 0, 1, True),
    "k4s2_merged_padded": (1, 48, 32, 1, (4, 5, 6), 4, 2, (1, 1, 2), 0, 1, True),
    "merged_beside_dilated": (2, 32, 32, 1, (4, 5, 6), (3, 3, 2), (1, 2, 2), (1, 1, 0), 0,
                              (2, 1, 1), True),
    "unmerged_odd_extent": (2, 24, 32, 1, (3, 4, 5), 2, 2, 0, (0, 0, 1), 1, False),
    # U-Net k2s2 128 -> 64 over 68 row tiles: grad-input's 128 columns one
    # tile (choose_columns keeps 128 beyond 66 tiles), its 8 fp16/bf16 stages
    # of weight (128 KB) resident beside the A ring (TF32's 16 are not).
    "unet_k2s2_128_columns": (2, 128, 64, 1, (16, 16, 17), 2, 2, 0, 0, 1, True),
    # U-Net k2s2 32 -> 32 over 35 row tiles (too many to split K): TF32's 8
    # stages of weight resident beside 4 A slots; fp16/bf16 merged w taps.
    "unet_k2s2_32_many_tiles": (2, 32, 32, 1, (12, 13, 14), 2, 2, 0, 0, 1, False),
}

# Strided forwards whose phases (1-8 taps) the Hopper GEMM's halo loader takes
# when forced to at any tap count (its box 8 wide and 8 high pads these grids
# little): 128- and 64-byte rows, partial column tiles, two groups.
HALO_CONFIGS = {
    "k4s2p1_64": (2, 64, 64, 1, (3, 8, 8), 4, 2, 1, 0, 1, True),
    "k3s2p1op1_32_to_48": (2, 32, 48, 1, (3, 8, 7), 3, 2, 1, 1, 1, False),
    "k4s2p1_two_groups_of_64": (2, 128, 96, 2, (2, 8, 8), 4, 2, 1, 0, 1, False),
}

# The Hopper grad-weight GEMM: multiples of 32 channels per group on both
# sides; its tiles (128-column tiles spanning two taps of 64 channels or four
# of 32, the last one part past the final tap), the turned product of
# 32-channel input tiles, split reductions (B·s/S box ranges) and one split,
# 64-position boxes cut by odd extents, element strides up to 8 on
# grad_output, dilation, groups; then its fallbacks.
GRAD_WEIGHT_SM90_CONFIGS = {
    "tile_64x64_splits": (2, 64, 64, 1, (9, 10, 11), 3, 2, 1, 1, 1, True),
    "tile_128x128_two_groups": (1, 256, 256, 2, (5, 6, 7), 3, 2, 1, 0, 1, False),
    "tile_128x64_dilated": (2, 128, 64, 1, (6, 5, 7), (3, 2, 3), (2, 1, 3), (2, 0, 1), (1, 0, 2),
                            (2, 1, 1), True),
    "tile_64x128_stride_8": (1, 64, 128, 1, (3, 4, 3), 2, 8, 0, 3, 1, False),
    "one_tap_many_splits": (3, 64, 64, 1, (16, 15, 17), 1, 1, 0, 0, 1, True),
    # One tap of 64 output channels: a 64-column tile under 128 input channels.
    "tile_128x64_one_tap": (2, 128, 64, 1, (7, 6, 5), 1, 2, 0, 1, 1, True),
    # 32 input channels: the turned product (MMA rows are (tap, co) columns),
    # 32-channel grad_output copies, 27 taps: the last tile 96 columns.
    "turned_32_to_32_k3s1": (2, 32, 32, 1, (9, 10, 11), 3, 1, 1, 0, 1, True),
    "turned_32_to_32_one_split": (1, 32, 32, 1, (3, 4, 5), 3, 1, 1, 0, 1, False),
    # Turned over 64-channel grad_output copies, strides 1-3, dilation.
    "turned_32_to_64_aniso": (1, 32, 64, 1, (5, 6, 7), (3, 1, 2), (1, 2, 3), (1, 0, 0), (0, 1, 2),
                              (2, 1, 1), True),
    # 64 and 128 input channels over 32-channel grad_output copies.
    "copies_of_32_k5s2": (2, 64, 32, 1, (6, 7, 5), 5, 2, 2, 1, 1, False),
    "tile_128_copies_of_32": (2, 128, 32, 1, (5, 4, 6), 3, 2, 1, 1, 1, True),
    # 96 channels a group (three 32-channel tiles and copies a tap), two groups.
    "channels_96_two_groups": (2, 192, 192, 2, (4, 5, 3), 2, 2, 0, 0, 1, False),
    # Two groups of 64 -> 32 at stride 1 (TF32: a group's 27 taps of 32
    # channels in 14 column tiles, the last half past the final tap), splits.
    "groups_64_to_32_k3s1": (2, 128, 64, 2, (7, 9, 5), 3, 1, 1, 0, 1, True),
    # Stride 9: past TMA's element strides.  48 channels: not whole 32-channel rows.
    "fallback_stride_9": (1, 64, 64, 1, (2, 3, 2), 3, (9, 1, 1), 1, 0, 1, False),
    "fallback_48_channels": (1, 48, 64, 1, (4, 3, 5), 3, 2, 1, 0, 1, True),
}

# Channels-last grad-weight GEMM: channel counts in whole 16-byte pieces (read
# in place), reductions long enough to be split across blocks.
GRAD_WEIGHT_CONFIGS = {
    "many_m_tiles": TENSOR_CORE_CONFIGS["many_m_tiles"],
    "grouped_wide_k": TENSOR_CORE_CONFIGS["grouped_wide_k"],
    # Beyond 128 channels a side, second tiles partial; 27 taps, splits.
    "wide_channels": (2, 136, 200, 1, (6, 7, 9), 3, 2, 1, 1, 1, True),
    # 16 and 8 channels per group, anisotropic everything.
    "narrow_groups": (2, 64, 32, 4, (5, 8, 7), (3, 2, 4), (2, 1, 3), (1, 0, 2), (1, 0, 1), 1, True),
    # Stride 4, dilation 2, output padding: every tap's box cropped differently.
    "strided_dilated": (3, 24, 40, 1, (6, 5, 7), 3, 4, 1, (3, 0, 1), 2, False),
}


# Kernel == stride with no padding, dilation or output padding: every output
# position takes one tap, and the forward runs as one GEMM over (tap, co)
# columns (forward_tap_columns_gemm.cu) where a group's input channels fit
# 512 bytes.
TAP_COLUMN_CONFIGS = {
    "unet_partial_tiles": (2, 24, 40, 1, (3, 5, 7), 2, 2, 0, 0, 1, True),
    "aniso_taps_odd_columns": (1, 9, 13, 1, (4, 3, 5), (1, 2, 3), (1, 2, 3), 0, 0, 1, False),
    "groups": (3, 32, 24, 2, (5, 4, 3), 2, 2, 0, 0, 1, True),
    "k3_half_k_step": (2, 8, 16, 1, (3, 4, 2), 3, 3, 0, 0, 1, True),
    "widest_channels": (1, 128, 10, 1, (3, 4, 5), 2, 2, 0, 0, 1, True),
    # 141 row tiles: column tiles split two ways, a block walks two of them.
    "column_tiles_per_block": (1, 16, 24, 1, (24, 25, 30), 2, 2, 0, 0, 1, True),
    # NCDHW planes of whole 16-byte pieces are read in place (k-major A):
    # samples of 40 rows inside one 120-row tile, channels padded to the
    # k-step with zero rows, kernel width 2 (paired stores).
    "planes_samples_in_a_tile": (3, 24, 40, 1, (2, 4, 5), 2, 2, 0, 0, 1, True),
    # Groups' planes at a channel offset, a 1 × 2 × 2 kernel.
    "planes_groups": (2, 48, 24, 3, (4, 6, 6), (1, 2, 2), (1, 2, 2), 0, 0, 1, True),
    # 256 bytes of channels in bf16, 512 in TF32: the widest k-major A (one
    # block an SM fits).
    "planes_widest": (1, 128, 16, 1, (2, 4, 8), 2, 2, 0, 0, 1, False),
    # The Hopper version (forward_tap_columns_sm90.cu), into channels-last
    # outputs: four 128-byte chunks of K, the last partly past the channels
    # (fp16/bf16; 800 bytes in TF32, the phase GEMM's); groups of 48 channels
    # (one chunk in fp16/bf16, two in TF32, zeros past them) and 16 output
    # channels (two 8-channel pieces a tap).
    "four_k_chunks": (2, 200, 40, 1, (3, 4, 5), 2, 2, 0, 0, 1, True),
    "groups_of_column_pieces": (2, 96, 32, 2, (4, 3, 5), 2, 2, 0, 0, 1, True),
    # 264 bf16 channels: beyond 512 bytes, the phase GEMM takes it.
    "too_wide": (1, 264, 8, 1, (2, 3, 2), 2, 2, 0, 0, 1, False),
}

# Kernel == stride with stride 2 along W, NCDHW operands: grad-input reads
# grad_output's planes in place, K in the weight's order
# (grad_input_tap_blocks_gemm.cu), and grad-weight x's and grad_output's
# (grad_weight_tap_blocks_gemm.cu), where the W lines hold whole 16-byte pieces.
TAP_BLOCK_CONFIGS = {
    # 240 rows (a partial row tile), 24 of 64 columns, K in 10-20 stages.
    "unet_partial_tiles": (2, 24, 40, 1, (3, 5, 8), 2, 2, 0, 0, 1, True),
    # Cout/G = 5: K ends mid-stage; samples of 24 rows inside one tile.
    "k_tail_samples_in_a_tile": (3, 16, 5, 1, (2, 3, 4), 2, 2, 0, 0, 1, False),
    # 136 input channels: 128-column tiles, the second partial.
    "wide_columns": (1, 136, 16, 1, (4, 4, 8), 2, 2, 0, 0, 1, True),
    "groups": (2, 48, 32, 2, (3, 4, 4), 2, 2, 0, 0, 1, True),
    # Strides 1 and 3 on D and H (kernel equal).
    "aniso_strides": (2, 16, 24, 1, (5, 3, 4), (1, 3, 2), (1, 3, 2), 0, 0, 1, True),
    # Output padding on D and H: grad_output rows no tap reads.
    "output_padding_dh": (2, 16, 16, 1, (3, 3, 4), 2, 2, 0, (1, 1, 0), 1, True),
    # W = 6: TF32 pieces (two rows) fit, fp16/bf16 ones (four) do not.
    "w_in_tf32_pieces_only": (1, 16, 16, 1, (2, 3, 6), 2, 2, 0, 0, 1, False),
    # Stride 3 along W: the phase GEMMs.
    "stride3_w": (1, 16, 16, 1, (2, 3, 4), 3, 3, 0, 0, 1, True),
    # 16 row tiles, K of 256 q-rows (64 stages in TF32).
    "long_k": (2, 64, 64, 1, (8, 8, 16), 2, 2, 0, 0, 1, True),
    # K of 512 q-rows: the phase GEMMs.
    "long_k_small_grid": (1, 32, 128, 1, (4, 8, 32), 2, 2, 0, 0, 1, False),
    # Grad-weight: 69 stages of 32 positions (each sample's last one partial)
    # in 5 uneven splits that cross samples; 21 q-rows (odd: a gw row is not
    # whole 16-byte pieces).  Grad-input: K not whole pieces, the phase GEMMs.
    "uneven_splits_odd_q": (3, 40, 7, 1, (6, 10, 12), (1, 3, 2), (1, 3, 2), 0, 0, 1, True),
}

# At most 4 output channels a group, more than 16 input channels (fewer are
# the stencil's): the forward folds its taps into the GEMM's columns
# (forward_taps_gemm.cu) where taps · Cout/G ≤ 192, a group's padded input
# channels ≤ 512 bytes and every axis with taps has stride ≥ 2.
FORWARD_TAPS_CONFIGS = {
    "rgb_out_k4s2p1": (2, 24, 3, 1, (5, 6, 7), 4, 2, 1, 0, 1, True),
    "k3s2p1op1_one_channel": (2, 40, 1, 1, (4, 5, 6), 3, 2, 1, 1, 1, False),
    "groups_of_two_outputs": (2, 48, 4, 2, (3, 5, 4), 4, 2, 1, 0, 1, True),
    "aniso_dilated": (2, 20, 3, 1, (3, 4, 5), (3, 4, 2), (2, 3, 2), (1, 0, 2), (1, 2, 0),
                      (2, 1, 1), False),
    "stride3_kernel_345": (1, 40, 1, 1, (3, 4, 3), (3, 4, 5), 3, 1, 0, 1, True),
    # Several tiles on every axis, boxes cut by both ends of x.
    "many_tiles": (1, 64, 3, 1, (9, 10, 21), 4, 2, 1, 0, 1, True),
    # 128 channels: 256 bytes in fp16/bf16, 512 in TF32 (the widest: a smaller box).
    "widest_channels": (1, 128, 3, 1, (3, 4, 5), 4, 2, 1, 0, 1, True),
    # 160 channels: 320 bytes in fp16/bf16 (ten k-steps); 640 in TF32, the phase GEMM's.
    "past_widest_channels": (1, 160, 3, 1, (3, 4, 5), 4, 2, 1, 0, 1, False),
    # Past the kernel's limits, the phase GEMMs: 256 columns; a stride-1 axis.
    "too_many_columns": (1, 32, 4, 1, (3, 3, 3), 4, 2, 1, 0, 1, True),
    "stride_one_axis": (1, 24, 3, 1, (4, 5, 6), (4, 3, 4), (2, 1, 2), 1, 0, 1, True),
    # Stride 1 on every axis (the RGB output k3s1p1): the phase GEMMs; the taps under
    # _set_forward_taps_any_stride (test_forward_taps_gemm_on_stride_one_axes).
    "stride_one_k3": (2, 24, 3, 1, (5, 6, 7), 3, 1, 1, 0, 1, True),
}

# The grad-input of the same layers folds their taps into K
# (grad_input_taps_gemm.cu) up to 512 taps, whatever the strides and columns.
GRAD_INPUT_TAPS_CONFIGS = dict(
    FORWARD_TAPS_CONFIGS,
    # 576 taps: the phase GEMMs.
    too_many_taps=(1, 24, 3, 1, (2, 2, 2), (9, 8, 8), 2, 1, 0, 1, False),
)

# Narrow groups on the CUDA-core stencil (narrow_gather.cu).  Depthwise
# (G = Cin = Cout): channel counts that channels-last walks in 16-byte vectors
# in every dtype (8, 16, 24), 6 (vectors in fp64 only), 1 (one channel: W
# fastest whatever the layout), every geometry feature; 729 taps (9³: fp64's
# weights take two slabs of four channels).  Then groups of a few channels:
# destination channels a group that make whole items of 8, 4 or neither, on
# both passes.  Past the kernel's limits, the generic gather kernels: 1584 taps
# (an item's weights pass a block's 24 KB) and more destination coordinates
# than a block tabulates.
NARROW_GATHER_CONFIGS = {
    "k3s2p1op1_c16": (2, 16, 16, 16, (5, 6, 7), 3, 2, 1, 1, 1, True),
    "k3s1p1_c24": (1, 24, 24, 24, (7, 5, 6), 3, 1, 1, 0, 1, False),
    "k4s2p1_c8": (3, 8, 8, 8, (4, 5, 3), 4, 2, 1, 0, 1, True),
    "aniso_dilated_c16": (1, 16, 16, 16, (4, 6, 5), (3, 2, 5), (3, 1, 2), (1, 0, 2), (2, 0, 1),
                          (2, 1, 2), True),
    "phases_without_taps_c8": (2, 8, 8, 8, (3, 4, 3), 3, 4, 1, (3, 0, 1), 2, True),
    "c6_no_vectors": (2, 6, 6, 6, (5, 4, 3), 3, 2, 1, 1, 1, True),
    "one_channel": (2, 1, 1, 1, (5, 4, 6), 3, 2, 1, 1, 1, True),
    "kernel_729_taps": (2, 8, 8, 8, (2, 3, 2), 9, 1, 4, 0, 1, True),
    # Groups of a few channels (forward S -> D source -> destination channels
    # a group; grad-input the reverse).
    "rgba_4_to_8": (2, 4, 8, 1, (5, 6, 7), 3, 2, 1, 1, 1, True),
    # An odd batch: the last item's second sample (Plan::samples) absent.
    "rgba_4_to_8_batch3_k3s1": (3, 4, 8, 1, (4, 5, 3), 3, 1, 1, 0, 1, True),
    "rgb_3_to_16": (2, 3, 16, 1, (4, 5, 6), 3, 2, 1, 1, 1, False),
    "groups4_2_to_4": (1, 8, 16, 4, (5, 4, 6), (3, 2, 4), (2, 1, 3), (1, 0, 2), (1, 0, 1), 1, True),
    "16_to_4_dilated": (2, 16, 4, 1, (4, 5, 3), 3, 1, 2, 0, 2, True),
    "depthwise_multiplier_2": (2, 4, 8, 4, (5, 4, 3), 3, 2, 1, 1, 1, True),
    "kernel_1584_taps": (1, 8, 8, 8, (2, 3, 2), (11, 12, 12), 1, 5, 0, 1, True),
    "too_many_coordinates": (1, 8, 8, 8, (1, 1, 2100), 1, 1, 0, 0, 1, True),
}

# The CUDA-core grad-weight of groups of at most 4 input channels against at
# most 16 output ones: groups, stride, dilation; one position a split (a
# single-position batch) and many splits.
NARROW_GRAD_WEIGHT_CONFIGS = {
    "rgba_4_to_8": (3, 4, 8, 1, (6, 5, 7), 3, 2, 1, 1, 1, False),
    "rgb_3_to_16": (2, 3, 16, 1, (4, 5, 6), (3, 2, 4), (1, 2, 3), (1, 0, 2), 0, 1, True),
    "widest_4_to_16": (2, 4, 16, 1, (5, 6, 4), 3, 2, 1, 1, 1, False),
    "groups2_3_to_12": (2, 6, 24, 2, (5, 4, 3), 3, 2, 1, 1, 1, False),
    "groups4_2_to_4": (1, 8, 16, 4, (5, 4, 6), (3, 2, 4), (2, 1, 3), (1, 0, 2), (1, 0, 1), 1, True),
    "multiplier_2": (2, 4, 8, 4, (5, 4, 3), 3, 2, 1, 1, 1, True),
    "one_position": (1, 4, 8, 1, (1, 1, 1), 3, 2, 1, 1, 1, True),
}

# The taps-folded grad-weight GEMM (at most 4 output channels a group): taps
# in one partial column tile of 32 (2, 24, 27) or several (64: two, 125:
# four), input channels in one partial tile (8 … 24 of 64) or two (72), input
# groups read in place (multiples of 8 channels in bf16, 4 in fp32) or padded
# (10, 12), gy's groups padded (1-3 channels) or, channels-last with 4, read
# in place; groups, anisotropic stride and kernel, dilation, stride beyond
# the kernel (output positions no tap reaches), one split and 40.
TAPS_GEMM_CONFIGS = {
    "rgb_out_64_to_3": (2, 64, 3, 1, (4, 5, 3), 4, 2, 1, 0, 1, True),
    "rgb_out_24_to_3_dilated": (2, 24, 3, 1, (5, 4, 6), 3, (2, 1, 2), 1, (1, 0, 1), (1, 2, 1), True),
    "two_input_tiles_72_to_2": (1, 72, 2, 1, (3, 4, 5), 3, 2, 1, 1, 1, False),
    "groups2_16_to_4": (2, 32, 8, 2, (4, 3, 5), (2, 3, 4), (2, 1, 3), (0, 1, 1), (1, 0, 2), 1, True),
    "one_output_channel_k5": (1, 16, 1, 1, (3, 3, 4), 5, 1, 2, 0, 1, True),
    "stride_beyond_kernel": (2, 8, 2, 1, (3, 4, 2), (1, 2, 1), (3, 3, 2), 0, (2, 1, 1), 1, True),
    "forty_splits": (8, 8, 3, 1, (16, 16, 20), 3, 2, 1, 1, 1, True),
    "padded_input_12_to_3": (2, 12, 3, 1, (4, 5, 6), 3, 2, 1, 1, 1, True),
    "groups3_10_to_4": (1, 30, 12, 3, (3, 4, 5), 3, 2, 1, 1, 1, False),
}

# One layer per kernel family, for the broadcast-operand test
# (stride-0 x and grad_output).
BROADCAST_CONFIGS = {
    "dense_16_to_24": (3, 16, 24, 1, (5, 4, 6), 3, 2, 1, 1, 1, True),
    "hopper_64_to_64": (2, 64, 64, 1, (4, 3, 5), 2, 2, 0, 0, 1, True),
    "narrow_4_to_8": (3, 4, 8, 1, (5, 4, 6), 3, 2, 1, 1, 1, True),
    "depthwise_8": (2, 8, 8, 8, (5, 4, 6), 3, 2, 1, 1, 1, True),
    "rgb_out_64_to_3": (2, 64, 3, 1, (4, 5, 3), 4, 2, 1, 0, 1, True),
}

// Stream-K's cut of a split reduction: `tiles` output tiles, each a
// reduction of `steps` steps, laid end to end (tile-major) as tiles × steps
// items and cut into `workers` equal ranges, worker w taking items
// [I·w/W, I·(w+1)/W).  A worker's range crosses tiles; each piece of a tile
// it holds is a unit whose sums go to the tile's next plane of partials, the
// planes then added in order.  Equal ranges keep every SM busy to the end
// where whole tiles (or a whole number of splits each) would leave a last,
// partial wave.  From the shape alone, as every split here: the same sums on
// any GPU.  Host and device; free of CUDA headers.
#pragma once

#include <cstdint>

#include "../index_math.h"

namespace tconv3d::cuda {

struct RangeCut {
  int64_t workers, tiles, steps;  // workers ≤ tiles · steps: no range is empty

  TCONV3D_HOST_DEVICE int64_t items() const { return tiles * steps; }
  TCONV3D_HOST_DEVICE int64_t begin(int64_t w) const { return items() * w / workers; }
  // The worker whose range holds item i: the last w with begin(w) ≤ i.
  TCONV3D_HOST_DEVICE int64_t worker_of(int64_t i) const { return ((i + 1) * workers - 1) / items(); }
  // The ranges tile t is cut into: its planes of partials.
  TCONV3D_HOST_DEVICE int64_t pieces(int64_t t) const {
    return worker_of((t + 1) * steps - 1) - worker_of(t * steps) + 1;
  }
  // The plane of worker w's piece of tile t.
  TCONV3D_HOST_DEVICE int64_t plane(int64_t w, int64_t t) const { return w - worker_of(t * steps); }

  // The most pieces any tile has (host: one look per worker boundary).
  int64_t most_pieces() const {
    int64_t most = 1, run = 1, tile = -1;
    for (int64_t w = 1; w < workers; ++w) {
      const int64_t b = begin(w);
      if (b % steps == 0) continue;  // at a tile's start: cuts nothing
      run = b / steps == tile ? run + 1 : 2;
      tile = b / steps;
      most = run > most ? run : most;
    }
    return most;
  }
};

// A piece of a tile: steps [step0, step1) of tile `tile`, summed into plane
// `plane`.
struct RangePiece {
  int64_t tile, step0, step1, plane;
};

// f(piece) for each piece of the ranges of workers first, first + stride, …
// in order (each worker's from its first item).
template <typename F>
TCONV3D_HOST_DEVICE void for_each_piece(const RangeCut& cut, int64_t first, int64_t stride, F&& f) {
  for (int64_t w = first; w < cut.workers; w += stride) {
    const int64_t end = cut.begin(w + 1);
    for (int64_t i = cut.begin(w); i < end;) {
      const int64_t t = i / cut.steps, tile_end = (t + 1) * cut.steps;
      const int64_t stop = end < tile_end ? end : tile_end;
      f(RangePiece{t, i - t * cut.steps, stop - t * cut.steps, cut.plane(w, t)});
      i = stop;
    }
  }
}

}  // namespace tconv3d::cuda

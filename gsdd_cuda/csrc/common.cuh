// Device-side scheduling shared by the CUDA kernels (rasterize_fwd.cu, rasterize_bwd.cu). The
// math itself is gsdd_math.h, the same functions the CPU kernels call.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gsdd_math.h"

namespace gsdd {

constexpr int kBlock = kTile * kTile;  // threads per block = Gaussians per shared-memory chunk
constexpr int kWarps = kBlock / 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Where the thread of a raster block sits: blockIdx.x = (image − image0)·tiles_per_image + local
// tile (the global tile id), one thread per pixel, plus the pixel's sample coordinates.
template <bool AA>
struct PixelSite {
  static constexpr int S = Samples<AA>::S;
  int64_t b;  // image
  int tile_x, tile_y, col, row;
  bool inside;  // false for threads of a partial tile beyond the image
  float sx[S], sy[S];

  __device__ __forceinline__ PixelSite(int tiles_x, int tiles_y, int height, int width, int64_t image0) {
    const int tiles_per_image = tiles_x * tiles_y;
    const int64_t rel = blockIdx.x / tiles_per_image;
    b = image0 + rel;
    const int t = static_cast<int>(blockIdx.x - rel * tiles_per_image);
    tile_x = t % tiles_x;
    tile_y = t / tiles_x;
    col = tile_x * kTile + threadIdx.x;
    row = tile_y * kTile + threadIdx.y;
    inside = col < width && row < height;
#pragma unroll
    for (int k = 0; k < S; ++k) {
      sx[k] = add_rn(static_cast<float>(col), Samples<AA>::off(k));
      sy[k] = add_rn(static_cast<float>(row), Samples<AA>::off(k));
    }
  }

  // Offset of this pixel in channel plane `channel` of a [B, C, H, W] tensor.
  __device__ __forceinline__ int64_t offset(int channels, int channel, int height, int width) const {
    return (b * channels + channel) * (static_cast<int64_t>(height) * width) + static_cast<int64_t>(row) * width +
           col;
  }

  // Δ = p − s per sample coordinate.
  __device__ __forceinline__ void deltas(float px, float py, float (&dx)[S], float (&dy)[S]) const {
#pragma unroll
    for (int k = 0; k < S; ++k) {
      dx[k] = sub_rn(px, sx[k]);
      dy[k] = sub_rn(py, sy[k]);
    }
  }
};

// Exact early-out: true when every sample of the pixel has σ > cut (all dropped; cut_sigma).
template <bool AA>
__device__ __forceinline__ bool pixel_beyond_cut(const float (&dx)[Samples<AA>::S], const float (&dy)[Samples<AA>::S],
                                                 float q11, float q12, float q22, float cut) {
  constexpr int S = Samples<AA>::S;
  bool beyond = true;
#pragma unroll
  for (int iy = 0; iy < S; ++iy) {
#pragma unroll
    for (int ix = 0; ix < S; ++ix) {
      const float sigma =
          sigma_of(square_term(q11, dx[ix]), square_term(q22, dy[iy]), q12, dx[ix], dy[iy]);
      beyond = beyond && sigma > cut;
    }
  }
  return beyond;
}

// Cooperative load of chunk [base, base + kBlock) of image b: each thread takes one Gaussian,
// applies visible_gaussian (the same test as every other pass) and tests whether its tile box
// contains tile (tile_x, tile_y); hits are compacted into shared memory in Gaussian-id order (so
// sums over them are deterministic). Returns the number of hits (block-uniform).
// `store(pos, i, g, o)` writes slot pos for the image-local Gaussian i. Contains block-wide
// barriers: every thread of the block must call it.
template <typename Store>
__device__ __forceinline__ int load_chunk(const float* __restrict__ xy, const float* __restrict__ chol,
                                          const float* __restrict__ opacity, int64_t b, int n, int base, int tile_x,
                                          int tile_y, int height, int width, bool antialias, int* s_warp_count,
                                          Store store) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int i = base + tid;
  bool hit = false;
  Projected<float> g;
  float o = 0.0f;
  if (i < n) {
    const int64_t gid = b * static_cast<int64_t>(n) + i;
    hit = visible_gaussian(xy, chol, opacity, gid, height, width, antialias, g, o) && tile_x >= g.x0 &&
          tile_x < g.x1 && tile_y >= g.y0 && tile_y < g.y1;
  }
  const unsigned ballot = __ballot_sync(kFullMask, hit);
  if (lane == 0) s_warp_count[warp] = __popc(ballot);
  __syncthreads();
  int offset = 0;
  int total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int cnt = s_warp_count[w];
    offset += (w < warp) ? cnt : 0;
    total += cnt;
  }
  if (hit) store(offset + __popc(ballot & ((1u << lane) - 1u)), i, g, o);
  __syncthreads();
  return total;
}

}  // namespace gsdd

// Shared device code of the gsdd rasterizer (SPEC.md §2). Included by rasterize_fwd.cu and
// rasterize_bwd.cu only.
//
// Exactness: the projection and the per-sample exponent are written with explicitly rounded
// intrinsics (__fmul_rn, __fadd_rn, ...) in the same operation order as the PyTorch reference
// (gsdd_cli/render/reference.py), so that the compiler cannot contract them into FMAs. The culling
// radius, tile box and cut-offs (σ < 0, w < 1/255) then agree bit for bit with the reference run in
// float32 on the same GPU, and forward outputs differ only by summation order. Do not build with
// --use_fast_math: it would replace sqrtf, expf and the division by approximations.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace gsdd {

constexpr int kTile = 16;                       // tile side in pixels (SPEC §2.3)
constexpr int kBlock = kTile * kTile;           // threads per block = Gaussians per shared chunk
constexpr int kWarps = kBlock / 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Python floats of the reference, rounded to float32 exactly as torch rounds a scalar operand.
constexpr float kAlphaMin = static_cast<float>(1.0 / 255.0);
constexpr float kFilterVar = static_cast<float>(1.0 / 12.0);
constexpr float kMinVar = 1.0f / 16.0f;
constexpr float kLambdaFloor = static_cast<float>(0.1);
// Opacity below this can never give w >= 1/255 (w <= o·e^{-σ} <= o for σ >= 0), so such a
// Gaussian is dropped at load time; the margin keeps the test conservative under rounding.
constexpr float kOpacityCull = static_cast<float>(0.999 / 255.0);

// Everything one Gaussian needs inside a tile, plus its integer tile box [x0, x1) × [y0, y1).
struct Projected {
  float px, py;          // centre in pixels
  float q11, q12, q22;   // conic Q = Σ'^{-1}
  int x0, x1, y0, y1;    // touched tiles
};

__device__ __forceinline__ int clamp_tile(float v, int hi) {
  // truncation toward zero, then clamp to [0, hi] (done in float so huge values cannot overflow)
  float t = truncf(v);
  t = fminf(fmaxf(t, 0.0f), static_cast<float>(hi));
  return static_cast<int>(t);
}

// Where the thread of a raster block sits: blockIdx.x = image·tiles_per_image + local tile (the
// global tile id of SPEC §2.5), one thread per pixel, plus the pixel's sub-sample coordinates
// {col + ¼, col + ¾} × {row + ¼, row + ¾} (AA) or the pixel centre. Shared by forward and backward.
template <bool AA>
struct PixelSite {
  static constexpr int S = AA ? 2 : 1;  // sub-samples per axis
  int64_t b;                            // image
  int tile_x, tile_y, col, row;
  bool inside;                          // false for threads of a partial tile beyond the image
  float sx[S], sy[S];

  __device__ __forceinline__ PixelSite(int tiles_x, int tiles_y, int height, int width) {
    const int tiles_per_image = tiles_x * tiles_y;
    b = blockIdx.x / tiles_per_image;
    const int t = static_cast<int>(blockIdx.x - b * tiles_per_image);
    tile_x = t % tiles_x;
    tile_y = t / tiles_x;
    col = tile_x * kTile + threadIdx.x;
    row = tile_y * kTile + threadIdx.y;
    inside = col < width && row < height;
#pragma unroll
    for (int k = 0; k < S; ++k) {
      const float off = AA ? (k == 0 ? 0.25f : 0.75f) : 0.5f;
      sx[k] = static_cast<float>(col) + off;
      sy[k] = static_cast<float>(row) + off;
    }
  }

  // Offset of this pixel in channel plane `channel` of a [B, C, H, W] tensor.
  __device__ __forceinline__ int64_t offset(int channels, int channel, int height, int width) const {
    return (b * channels + channel) * (static_cast<int64_t>(height) * width) +
           static_cast<int64_t>(row) * width + col;
  }
};

// SPEC §2.1-2.3, same operation order as reference.project(). Returns false for non-finite
// Gaussians (they are skipped; the reference's NaN box also masks them out).
__device__ __forceinline__ bool project_gaussian(float x, float y, float l11, float l21, float l22,
                                                 int height, int width, float filter_var,
                                                 int tiles_x, int tiles_y, Projected& g) {
  g.px = __fmul_rn(0.5f * static_cast<float>(width), __fadd_rn(x, 1.0f));
  g.py = __fmul_rn(0.5f * static_cast<float>(height), __fadd_rn(y, 1.0f));
  const float a = fmaxf(__fadd_rn(__fmul_rn(l11, l11), filter_var), kMinVar);        // Σ'11
  const float b = __fmul_rn(l11, l21);                                                 // Σ'12
  const float c = fmaxf(__fadd_rn(__fadd_rn(__fmul_rn(l21, l21), __fmul_rn(l22, l22)), filter_var),
                        kMinVar);                                                      // Σ'22
  const float det = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, b));
  const float inv = __frcp_rn(det);
  g.q11 = __fmul_rn(c, inv);
  g.q12 = __fmul_rn(-b, inv);
  g.q22 = __fmul_rn(a, inv);
  const float half = __fmul_rn(0.5f, __fadd_rn(a, c));
  const float lam = __fadd_rn(half, __fsqrt_rn(fmaxf(__fsub_rn(__fmul_rn(half, half), det), kLambdaFloor)));
  const float r = ceilf(__fmul_rn(3.0f, __fsqrt_rn(lam)));
  if (!(isfinite(g.px) && isfinite(g.py) && isfinite(g.q11) && isfinite(g.q12) &&
        isfinite(g.q22) && isfinite(r))) {
    return false;
  }
  const float inv_tile = 1.0f / static_cast<float>(kTile);  // exact power of two
  g.x0 = clamp_tile(__fmul_rn(__fsub_rn(g.px, r), inv_tile), tiles_x);
  g.x1 = clamp_tile(__fadd_rn(__fmul_rn(__fadd_rn(g.px, r), inv_tile), 1.0f), tiles_x);
  g.y0 = clamp_tile(__fmul_rn(__fsub_rn(g.py, r), inv_tile), tiles_y);
  g.y1 = clamp_tile(__fadd_rn(__fmul_rn(__fadd_rn(g.py, r), inv_tile), 1.0f), tiles_y);
  return true;
}

// σ = ½(Q11Δx² + Q22Δy²) + Q12ΔxΔy with the reference's rounding; the Δx and Δy squares are
// passed in precomputed (they are shared by the samples of a row / column).
__device__ __forceinline__ float sigma_of(float qxx, float qyy, float q12, float dx, float dy) {
  return __fadd_rn(__fmul_rn(0.5f, __fadd_rn(qxx, qyy)), __fmul_rn(__fmul_rn(q12, dx), dy));
}

// Cooperative load of chunk [base, base + kBlock) of image `b`: each thread projects one Gaussian
// and tests whether its tile box contains tile (tile_x, tile_y); hits are compacted into shared
// memory in Gaussian-id order (deterministic). Returns the number of hits (block-uniform).
// `store(pos, gid, g, o)` writes slot `pos`. Contains the block-wide barriers; every thread of the
// block must call it.
template <typename Store>
__device__ __forceinline__ int load_chunk(const float* __restrict__ xy, const float* __restrict__ chol,
                                          const float* __restrict__ opacity, int64_t b, int n,
                                          int base, int tile_x, int tile_y, int height, int width,
                                          float filter_var, int tiles_x, int tiles_y,
                                          int* s_warp_count, Store store) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int i = base + tid;
  bool hit = false;
  Projected g;
  float o = 0.0f;
  int64_t gid = 0;
  if (i < n) {
    gid = b * static_cast<int64_t>(n) + i;
    o = opacity[gid];
    if (o >= kOpacityCull) {  // false for NaN
      hit = project_gaussian(xy[2 * gid], xy[2 * gid + 1], chol[3 * gid], chol[3 * gid + 1],
                             chol[3 * gid + 2], height, width, filter_var, tiles_x, tiles_y, g) &&
            tile_x >= g.x0 && tile_x < g.x1 && tile_y >= g.y0 && tile_y < g.y1;
    }
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
  if (hit) {
    store(offset + __popc(ballot & ((1u << lane) - 1u)), gid, g, o);
  }
  __syncthreads();
  return total;
}

}  // namespace gsdd

// Forward rasterizer: gsdd::rasterize_fwd (SPEC.md §2.4-2.5).
//
// One block of 16×16 threads per (image, tile) — blockIdx.x = image·tiles_per_image + local tile,
// the global tile id of SPEC §2.5 — and one thread per pixel. Instead of building and sorting a
// global (tile, Gaussian) intersection list, each block scans the N Gaussians of its own image in
// chunks of 256, projects them and keeps those whose tile box contains the block's tile
// (load_chunk in common.cuh). See docs/cuda.md for why this bucketing is used.
// blockIdx.y selects a group of up to CB colour channels (several groups only when C > 4).
#include "common.cuh"
#include "rasterize.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

namespace gsdd {

template <int CB, bool AA>
__global__ void __launch_bounds__(kBlock)
    rasterize_fwd_kernel(const float* __restrict__ xy,       // [B*N, 2]
                         const float* __restrict__ chol,     // [B*N, 3]
                         const float* __restrict__ rgb,      // [B*N, C]
                         const float* __restrict__ opacity,  // [B*N]
                         int n, int channels, int height, int width, int tiles_x, int tiles_y,
                         float* __restrict__ out) {          // [B, C, H, W]
  __shared__ float2 s_p[kBlock];
  __shared__ float4 s_qo[kBlock];  // q11, q12, q22, opacity
  __shared__ float s_c[kBlock * CB];
  __shared__ int s_warp_count[kWarps];

  const PixelSite<AA> site(tiles_x, tiles_y, height, width);
  const int64_t b = site.b;
  const int c0 = blockIdx.y * CB;
  const int cn = min(CB, channels - c0);
  const bool inside = site.inside;
  const float filter_var = AA ? kFilterVar : 0.0f;
  constexpr int S = PixelSite<AA>::S;
  const float (&sx)[S] = site.sx;
  const float (&sy)[S] = site.sy;

  float acc[CB];
#pragma unroll
  for (int k = 0; k < CB; ++k) acc[k] = 0.0f;

  auto store = [&](int pos, int64_t gid, const Projected& g, float o) {
    s_p[pos] = make_float2(g.px, g.py);
    s_qo[pos] = make_float4(g.q11, g.q12, g.q22, o);
#pragma unroll
    for (int k = 0; k < CB; ++k) s_c[pos * CB + k] = (k < cn) ? rgb[gid * channels + c0 + k] : 0.0f;
  };

  for (int base = 0; base < n; base += kBlock) {
    const int count = load_chunk(xy, chol, opacity, b, n, base, site.tile_x, site.tile_y, height, width,
                                 filter_var, tiles_x, tiles_y, s_warp_count, store);
    if (!inside) continue;  // still took part in the loads and barriers above
    for (int j = 0; j < count; ++j) {
      const float2 p = s_p[j];
      const float4 q = s_qo[j];
      float dx[S], dy[S], qxx[S], qyy[S];
#pragma unroll
      for (int k = 0; k < S; ++k) {
        dx[k] = __fsub_rn(p.x, sx[k]);
        dy[k] = __fsub_rn(p.y, sy[k]);
        qxx[k] = __fmul_rn(__fmul_rn(q.x, dx[k]), dx[k]);
        qyy[k] = __fmul_rn(__fmul_rn(q.z, dy[k]), dy[k]);
      }
      float wsum = 0.0f;
#pragma unroll
      for (int iy = 0; iy < S; ++iy) {
#pragma unroll
        for (int ix = 0; ix < S; ++ix) {
          const float sigma = sigma_of(qxx[ix], qyy[iy], q.y, dx[ix], dy[iy]);
          if (sigma >= 0.0f) {
            const float ow = __fmul_rn(q.w, expf(-sigma));
            const float w = ow > 1.0f ? 1.0f : ow;
            if (w >= kAlphaMin) wsum += w;
          }
        }
      }
      if (wsum != 0.0f) {
#pragma unroll
        for (int k = 0; k < CB; ++k) acc[k] = fmaf(wsum, s_c[j * CB + k], acc[k]);
      }
    }
  }

  if (inside) {
    const float scale = AA ? 0.25f : 1.0f;  // mean over the sub-samples
#pragma unroll
    for (int k = 0; k < CB; ++k) {
      if (k < cn) out[site.offset(channels, c0 + k, height, width)] = acc[k] * scale;
    }
  }
}

int64_t check_inputs(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                     const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width) {
  TORCH_CHECK(num_images >= 1, "gsdd: num_images must be >= 1, got ", num_images);
  TORCH_CHECK(height >= 0 && width >= 0, "gsdd: height and width must be >= 0, got ", height, "x", width);
  TORCH_CHECK(height <= (1 << 20) && width <= (1 << 20), "gsdd: image size too large: ", height, "x", width);
  TORCH_CHECK(xy.dim() == 2 && xy.size(1) == 2, "gsdd: xy must be [B*N, 2], got ", xy.sizes());
  const int64_t total = xy.size(0);
  TORCH_CHECK(chol.dim() == 2 && chol.size(0) == total && chol.size(1) == 3,
              "gsdd: chol must be [B*N, 3] = [", total, ", 3], got ", chol.sizes());
  TORCH_CHECK(rgb.dim() == 2 && rgb.size(0) == total && rgb.size(1) >= 1,
              "gsdd: rgb must be [B*N, C] with C >= 1 and B*N = ", total, ", got ", rgb.sizes());
  TORCH_CHECK(opacity.dim() == 2 && opacity.size(0) == total && opacity.size(1) == 1,
              "gsdd: opacity must be [B*N, 1] = [", total, ", 1], got ", opacity.sizes());
  TORCH_CHECK(total % num_images == 0, "gsdd: ", total, " Gaussians cannot be split into ",
              num_images, " images");
  TORCH_CHECK(total < std::numeric_limits<int32_t>::max(), "gsdd: B*N must be < 2^31, got ", total);
  for (const at::Tensor* t : {&xy, &chol, &rgb, &opacity}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat, "gsdd: inputs must be float32 (the Python wrapper casts), got ",
                t->scalar_type());
    TORCH_CHECK(t->is_cuda(), "gsdd: inputs must be CUDA tensors, got device ", t->device());
    TORCH_CHECK(t->device() == xy.device(), "gsdd: all inputs must be on one device");
  }
  const int64_t tiles = ((height + kTile - 1) / kTile) * ((width + kTile - 1) / kTile);
  TORCH_CHECK(num_images * tiles < std::numeric_limits<int32_t>::max(),
              "gsdd: B * tiles_per_image must be < 2^31");
  TORCH_CHECK((rgb.size(1) + 3) / 4 <= 65535, "gsdd: too many channels: ", rgb.size(1));
  return total / num_images;
}

namespace {

template <int CB, bool AA>
void launch_fwd(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                const at::Tensor& opacity, int64_t num_images, int n, int channels, int height,
                int width, at::Tensor& out, cudaStream_t stream) {
  const int tiles_x = (width + kTile - 1) / kTile;
  const int tiles_y = (height + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(num_images * tiles_x * tiles_y), (channels + CB - 1) / CB);
  const dim3 block(kTile, kTile);
  rasterize_fwd_kernel<CB, AA><<<grid, block, 0, stream>>>(
      xy.data_ptr<float>(), chol.data_ptr<float>(), rgb.data_ptr<float>(), opacity.data_ptr<float>(),
      n, channels, height, width, tiles_x, tiles_y, out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <bool AA>
void dispatch_fwd(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                  const at::Tensor& opacity, int64_t num_images, int n, int channels, int height,
                  int width, at::Tensor& out, cudaStream_t stream) {
  switch (channels) {
    case 1: launch_fwd<1, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
    case 2: launch_fwd<2, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
    case 3: launch_fwd<3, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
    default: launch_fwd<4, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
  }
}

}  // namespace

at::Tensor rasterize_fwd_cuda(const at::Tensor& xy_in, const at::Tensor& chol_in,
                              const at::Tensor& rgb_in, const at::Tensor& opacity_in,
                              int64_t num_images, int64_t height, int64_t width, bool antialias) {
  const int64_t n = check_inputs(xy_in, chol_in, rgb_in, opacity_in, num_images, height, width);
  const c10::cuda::CUDAGuard guard(xy_in.device());
  const at::Tensor xy = xy_in.contiguous();
  const at::Tensor chol = chol_in.contiguous();
  const at::Tensor rgb = rgb_in.contiguous();
  const at::Tensor opacity = opacity_in.contiguous();
  const int64_t channels = rgb.size(1);
  if (n == 0 || height == 0 || width == 0) {
    return at::zeros({num_images, channels, height, width}, xy.options());
  }
  at::Tensor out = at::empty({num_images, channels, height, width}, xy.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(xy.device().index()).stream();
  if (antialias) {
    dispatch_fwd<true>(xy, chol, rgb, opacity, num_images, static_cast<int>(n), static_cast<int>(channels),
                       static_cast<int>(height), static_cast<int>(width), out, stream);
  } else {
    dispatch_fwd<false>(xy, chol, rgb, opacity, num_images, static_cast<int>(n), static_cast<int>(channels),
                        static_cast<int>(height), static_cast<int>(width), out, stream);
  }
  return out;
}

TORCH_LIBRARY_IMPL(gsdd, CUDA, m) { m.impl("rasterize_fwd", &rasterize_fwd_cuda); }

}  // namespace gsdd

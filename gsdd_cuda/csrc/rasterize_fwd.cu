// CUDA forward: gsdd::rasterize_fwd and gsdd::project (docs/rasterizer.md).
//
// One block of 16×16 threads per (image, tile) — blockIdx.x = image·tiles_per_image + local tile —
// and one thread per pixel. Instead of building and sorting a global (tile, Gaussian) list, each
// block scans the N Gaussians of its own image in chunks of 256, projects them and keeps those
// whose tile box contains the block's tile (load_chunk). Each pixel sums its hits in Gaussian-id
// order: the forward is deterministic. blockIdx.y selects a group of up to CB = 4 colour channels.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "common.cuh"

namespace gsdd {
namespace {

template <int CB, bool AA>
__global__ void __launch_bounds__(kBlock)
    rasterize_fwd_kernel(const float* __restrict__ xy,       // [B*N, 2]
                         const float* __restrict__ chol,     // [B*N, 3]
                         const float* __restrict__ rgb,      // [B*N, C]
                         const float* __restrict__ opacity,  // [B*N]
                         int n, int channels, int height, int width, int tiles_x, int tiles_y,
                         float* __restrict__ out) {  // [B, C, H, W]
  constexpr int S = Samples<AA>::S;
  __shared__ float2 s_p[kBlock];
  __shared__ float4 s_qo[kBlock];  // q11, q12, q22, opacity
  __shared__ float s_cut[kBlock];
  __shared__ float s_c[kBlock * CB];
  __shared__ int s_warp_count[kWarps];

  const PixelSite<AA> site(tiles_x, tiles_y, height, width, 0);
  const int64_t b = site.b;
  const int c0 = blockIdx.y * CB;
  const int cn = min(CB, channels - c0);

  float acc[CB];
#pragma unroll
  for (int k = 0; k < CB; ++k) acc[k] = 0.0f;

  auto store = [&](int pos, int i, const Projected<float>& g, float o) {
    const int64_t gid = b * static_cast<int64_t>(n) + i;
    s_p[pos] = make_float2(g.px, g.py);
    s_qo[pos] = make_float4(g.q11, g.q12, g.q22, o);
    s_cut[pos] = cut_sigma(o);
#pragma unroll
    for (int k = 0; k < CB; ++k) s_c[pos * CB + k] = (k < cn) ? rgb[gid * channels + c0 + k] : 0.0f;
  };

  for (int base = 0; base < n; base += kBlock) {
    const int count = load_chunk(xy, chol, opacity, b, n, base, site.tile_x, site.tile_y, height, width, AA,
                                 s_warp_count, store);
    if (!site.inside) continue;  // still took part in the loads and barriers above
    for (int j = 0; j < count; ++j) {
      const float2 p = s_p[j];
      const float4 q = s_qo[j];
      const float cut = s_cut[j];
      float dx[S], dy[S];
      site.deltas(p.x, p.y, dx, dy);
      if (pixel_beyond_cut<AA>(dx, dy, q.x, q.y, q.z, cut)) continue;  // exact: all samples dropped
      bool near;
      float wsum;
      if (fast_exp_ok(cut)) {  // uniform over the block (one Gaussian)
        wsum = pixel_weight<float, AA, ExpMode::kFast>(dx, dy, q.x, q.y, q.z, q.w, near);
        if (near) wsum = pixel_weight<float, AA, ExpMode::kAccurate>(dx, dy, q.x, q.y, q.z, q.w, near);
      } else {
        wsum = pixel_weight<float, AA, ExpMode::kAccurate>(dx, dy, q.x, q.y, q.z, q.w, near);
      }
      if (wsum != 0.0f) {
#pragma unroll
        for (int k = 0; k < CB; ++k) acc[k] = fmaf(wsum, s_c[j * CB + k], acc[k]);
      }
    }
  }

  if (site.inside) {
    const float scale = AA ? 0.25f : 1.0f;  // mean over the sub-samples
#pragma unroll
    for (int k = 0; k < CB; ++k) {
      if (k < cn) out[site.offset(channels, c0 + k, height, width)] = acc[k] * scale;
    }
  }
}

__global__ void project_kernel(const float* __restrict__ xy, const float* __restrict__ chol, int64_t count,
                               int height, int width, bool antialias, float* __restrict__ p,
                               float* __restrict__ conic, int32_t* __restrict__ box) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  Projected<float> g;
  project_gaussian(xy[2 * i], xy[2 * i + 1], chol[3 * i], chol[3 * i + 1], chol[3 * i + 2], height, width, antialias,
                   g);
  store_projected(g, i, p, conic, box);
}

template <int CB, bool AA>
void launch_fwd(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb, const at::Tensor& opacity,
                int64_t num_images, int n, int channels, int height, int width, at::Tensor& out,
                cudaStream_t stream) {
  const int tiles_x = (width + kTile - 1) / kTile;
  const int tiles_y = (height + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(num_images * tiles_x * tiles_y), (channels + CB - 1) / CB);
  const dim3 block(kTile, kTile);
  rasterize_fwd_kernel<CB, AA><<<grid, block, 0, stream>>>(
      xy.const_data_ptr<float>(), chol.const_data_ptr<float>(), rgb.const_data_ptr<float>(),
      opacity.const_data_ptr<float>(), n, channels, height, width, tiles_x, tiles_y, out.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <bool AA>
void dispatch_fwd(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb, const at::Tensor& opacity,
                  int64_t num_images, int n, int channels, int height, int width, at::Tensor& out,
                  cudaStream_t stream) {
  switch (channels) {
    case 1: launch_fwd<1, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
    case 2: launch_fwd<2, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
    case 3: launch_fwd<3, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
    default: launch_fwd<4, AA>(xy, chol, rgb, opacity, num_images, n, channels, height, width, out, stream); break;
  }
}

at::Tensor rasterize_fwd_cuda(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                              const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width,
                              bool antialias) {
  const c10::cuda::CUDAGuard guard(xy.device());
  const OpInputs in = prepare_inputs(xy, chol, rgb, opacity, num_images, height, width);
  const auto shape = {num_images, in.channels, height, width};
  if (in.empty) return at::zeros(shape, in.xy.options());
  at::Tensor out = at::empty(shape, in.xy.options());  // every element is written by the kernel
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(in.xy.device().index()).stream();
  const int ni = static_cast<int>(in.n), ci = static_cast<int>(in.channels);
  const int hi = static_cast<int>(height), wi = static_cast<int>(width);
  if (antialias) {
    dispatch_fwd<true>(in.xy, in.chol, in.rgb, in.opacity, num_images, ni, ci, hi, wi, out, stream);
  } else {
    dispatch_fwd<false>(in.xy, in.chol, in.rgb, in.opacity, num_images, ni, ci, hi, wi, out, stream);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_cuda(const at::Tensor& xy_in, const at::Tensor& chol_in,
                                                            int64_t height, int64_t width, bool antialias) {
  check_project_inputs(xy_in, chol_in, height, width);
  const c10::cuda::CUDAGuard guard(xy_in.device());
  const at::Tensor xy = xy_in.contiguous(), chol = chol_in.contiguous();
  const int64_t count = xy.size(0);
  at::Tensor p = at::empty({count, 2}, xy.options());
  at::Tensor conic = at::empty({count, 3}, xy.options());
  at::Tensor box = at::empty({count, 4}, xy.options().dtype(at::kInt));
  if (count == 0) return {p, conic, box};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(xy.device().index()).stream();
  const int threads = 256;
  project_kernel<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, stream>>>(
      xy.const_data_ptr<float>(), chol.const_data_ptr<float>(), count, static_cast<int>(height),
      static_cast<int>(width), antialias, p.mutable_data_ptr<float>(), conic.mutable_data_ptr<float>(),
      box.mutable_data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {p, conic, box};
}

}  // namespace

TORCH_LIBRARY_IMPL(gsdd, CUDA, m) {
  m.impl("rasterize_fwd", &rasterize_fwd_cuda);
  m.impl("project", &project_cuda);
}

}  // namespace gsdd

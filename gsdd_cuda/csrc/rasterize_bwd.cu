// CUDA backward: gsdd::rasterize_bwd, without atomics (docs/rasterizer.md, "Backward").
//
// Two kernels per batch of images, each summing in a fixed order, so gradients are bit-identical
// run to run:
//
// 1. rasterize_bwd_partial_kernel: the forward's grid and chunking (one 16×16 block per (image,
//    tile), one thread per pixel, the tile's Gaussians compacted in id order). For each hit
//    Gaussian every thread evaluates its pixel (pixel_grad: the per-pixel sums of gsdd_math.h),
//    the warp reduces the 6 + CB values with shuffles, lane 0 stores the warp's sum in shared
//    memory, and after a barrier the 8 warp sums are added in warp order and written to a
//    per-(tile, Gaussian) slot of a global partial buffer. Every slot of a Gaussian's tile box is
//    written exactly once; nothing is accumulated in global memory.
// 2. rasterize_bwd_reduce_kernel: one thread per Gaussian adds its slots over its tile box in
//    (channel group, tile row, tile column) order and applies the chain rule (gsdd_math.h) once.
//
// The partial buffer holds groups × images × tiles × N × (6 + CB) floats; images are processed
// in batches so it stays under kPartialBudget bytes.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "checks.h"
#include "common.cuh"

namespace gsdd {
namespace {

constexpr int64_t kPartialBudget = int64_t(256) << 20;  // bytes of the partial buffer per batch

template <int CB, bool AA>
__global__ void __launch_bounds__(kBlock)
    rasterize_bwd_partial_kernel(const float* __restrict__ v_out,    // [B, C, H, W]
                                 const float* __restrict__ xy,       // [B*N, 2]
                                 const float* __restrict__ chol,     // [B*N, 3]
                                 const float* __restrict__ rgb,      // [B*N, C]
                                 const float* __restrict__ opacity,  // [B*N]
                                 int n, int channels, int height, int width, int tiles_x, int tiles_y,
                                 int64_t image0, int64_t slots,      // slots = batch images · tiles · N
                                 float* __restrict__ partial) {      // [groups][slots][6 + CB]
  constexpr int S = Samples<AA>::S;
  constexpr int NV = 6 + CB;
  __shared__ float2 s_p[kBlock];
  __shared__ float4 s_qo[kBlock];  // q11, q12, q22, opacity
  __shared__ float s_cut[kBlock];
  __shared__ float s_c[kBlock * CB];
  __shared__ int s_i[kBlock];  // image-local Gaussian index
  __shared__ float s_part[kWarps][32][NV];
  __shared__ int s_warp_count[kWarps];

  const PixelSite<AA> site(tiles_x, tiles_y, height, width, image0);
  const int64_t b = site.b;
  const int c0 = blockIdx.y * CB;
  const int cn = min(CB, channels - c0);
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int tile = blockIdx.x % (tiles_x * tiles_y);
  const int64_t rel = blockIdx.x / (tiles_x * tiles_y);
  float* const out = partial + (static_cast<int64_t>(blockIdx.y) * slots + (rel * tiles_x * tiles_y + tile) * n) * NV;

  // upstream gradient per sample: G / (samples per pixel)
  float gs[CB];
  {
    const float scale = AA ? 0.25f : 1.0f;
#pragma unroll
    for (int k = 0; k < CB; ++k) {
      gs[k] = (site.inside && k < cn) ? v_out[site.offset(channels, c0 + k, height, width)] * scale : 0.0f;
    }
  }

  auto store = [&](int pos, int i, const Projected<float>& g, float o) {
    const int64_t gid = b * static_cast<int64_t>(n) + i;
    s_p[pos] = make_float2(g.px, g.py);
    s_qo[pos] = make_float4(g.q11, g.q12, g.q22, o);
    s_cut[pos] = cut_sigma(o);
    s_i[pos] = i;
#pragma unroll
    for (int k = 0; k < CB; ++k) s_c[pos * CB + k] = (k < cn) ? rgb[gid * channels + c0 + k] : 0.0f;
  };

  for (int base = 0; base < n; base += kBlock) {
    const int count = load_chunk(xy, chol, opacity, b, n, base, site.tile_x, site.tile_y, height, width, AA,
                                 s_warp_count, store);
    for (int g0 = 0; g0 < count; g0 += 32) {
      const int m = min(32, count - g0);
      // Every thread runs every iteration: the warp shuffles need all 32 lanes.
      for (int jj = 0; jj < m; ++jj) {
        const int j = g0 + jj;
        const float2 p = s_p[j];
        const float4 q = s_qo[j];
        const float cut = s_cut[j];
        PixelGrad<float> pg{0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        bool touched = false;
        if (site.inside) {
          float dx[S], dy[S];
          site.deltas(p.x, p.y, dx, dy);
          if (!pixel_beyond_cut<AA>(dx, dy, q.x, q.y, q.z, cut)) {  // exact early-out
            bool near;
            if (fast_exp_ok(cut)) {
              pg = pixel_grad<float, AA, ExpMode::kFast>(dx, dy, q.x, q.y, q.z, q.w, near);
              if (near) pg = pixel_grad<float, AA, ExpMode::kAccurate>(dx, dy, q.x, q.y, q.z, q.w, near);
            } else {
              pg = pixel_grad<float, AA, ExpMode::kAccurate>(dx, dy, q.x, q.y, q.z, q.w, near);
            }
            touched = pg.wsum != 0.0f;  // a sample passed (w >= 1/255 > 0)
          }
        }
        float* const slot = &s_part[warp][jj][0];
        if (!__any_sync(kFullMask, touched)) {  // warp-uniform: nothing from this warp
          if (lane == 0) {
#pragma unroll
            for (int k = 0; k < NV; ++k) slot[k] = 0.0f;
          }
          continue;
        }
        float a = 0.0f;
#pragma unroll
        for (int k = 0; k < CB; ++k) a += s_c[j * CB + k] * gs[k];
        const GradValues<float> gv = pixel_grad_values(pg, a);
        float v[NV] = {gv.px, gv.py, gv.q11, gv.q12, gv.q22, gv.o};
#pragma unroll
        for (int k = 0; k < CB; ++k) v[6 + k] = pg.wsum * gs[k];
#pragma unroll
        for (int k = 0; k < NV; ++k) {
#pragma unroll
          for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(kFullMask, v[k], off);
        }
        if (lane == 0) {
#pragma unroll
          for (int k = 0; k < NV; ++k) slot[k] = v[k];
        }
      }
      __syncthreads();  // all warp sums of this group are in s_part
      for (int idx = tid; idx < m * NV; idx += kBlock) {
        const int jj = idx / NV, k = idx - jj * NV;
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) s += s_part[w][jj][k];  // fixed warp order
        out[static_cast<int64_t>(s_i[g0 + jj]) * NV + k] = s;
      }
      __syncthreads();  // s_part is reused by the next group
    }
    // The next chunk's load_chunk writes s_warp_count first and s_p/... only after its first
    // barrier, which orders them after this chunk's reads.
  }
}

template <int CB, bool AA>
__global__ void rasterize_bwd_reduce_kernel(const float* __restrict__ xy, const float* __restrict__ chol,
                                            const float* __restrict__ opacity, int n, int channels, int height,
                                            int width, int tiles_x, int64_t image0, int64_t batch_gaussians,
                                            int64_t slots, int groups, const float* __restrict__ partial,
                                            float* __restrict__ v_xy, float* __restrict__ v_chol,
                                            float* __restrict__ v_rgb, float* __restrict__ v_opacity) {
  constexpr int NV = 6 + CB;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= batch_gaussians) return;
  const int64_t gid = image0 * n + idx;
  const int64_t rel = idx / n;
  const int i = static_cast<int>(idx - rel * n);
  const int tiles = tiles_x * ((height + kTile - 1) / kTile);
  Projected<float> g;
  float o;
  const bool visible = visible_gaussian(xy, chol, opacity, gid, height, width, AA, g, o);
  float geo[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int grp = 0; grp < groups; ++grp) {
    float col[CB];
#pragma unroll
    for (int k = 0; k < CB; ++k) col[k] = 0.0f;
    if (visible) {
      for (int ty = g.y0; ty < g.y1; ++ty) {
        for (int tx = g.x0; tx < g.x1; ++tx) {
          const float* src = partial + (grp * slots + (rel * tiles + ty * tiles_x + tx) * n + i) * NV;
#pragma unroll
          for (int k = 0; k < 6; ++k) geo[k] += src[k];
#pragma unroll
          for (int k = 0; k < CB; ++k) col[k] += src[6 + k];
        }
      }
    }
#pragma unroll
    for (int k = 0; k < CB; ++k) {
      const int c = grp * CB + k;
      if (c < channels) v_rgb[gid * channels + c] = col[k];
    }
  }
  float gxy[2] = {0.f, 0.f}, gchol[3] = {0.f, 0.f, 0.f};
  if (visible) {
    const float geo5[5] = {geo[0], geo[1], geo[2], geo[3], geo[4]};
    chain_rule(geo5, chol[3 * gid], chol[3 * gid + 1], chol[3 * gid + 2], AA, height, width, gxy, gchol);
  }
  v_xy[2 * gid] = gxy[0];
  v_xy[2 * gid + 1] = gxy[1];
  v_chol[3 * gid] = gchol[0];
  v_chol[3 * gid + 1] = gchol[1];
  v_chol[3 * gid + 2] = gchol[2];
  v_opacity[gid] = visible ? geo[5] : 0.0f;
}

template <int CB, bool AA>
void launch_bwd(const at::Tensor& v_out, const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                const at::Tensor& opacity, int64_t num_images, int n, int channels, int height, int width,
                at::Tensor& v_xy, at::Tensor& v_chol, at::Tensor& v_rgb, at::Tensor& v_opacity,
                cudaStream_t stream) {
  constexpr int NV = 6 + CB;
  const int tiles_x = (width + kTile - 1) / kTile;
  const int tiles_y = (height + kTile - 1) / kTile;
  const int tiles = tiles_x * tiles_y;
  const int groups = (channels + CB - 1) / CB;
  const int64_t per_image = static_cast<int64_t>(groups) * tiles * n * NV * static_cast<int64_t>(sizeof(float));
  const int64_t batch = std::max<int64_t>(1, std::min<int64_t>(num_images, kPartialBudget / std::max<int64_t>(per_image, 1)));
  at::Tensor partial = at::empty({batch * per_image / static_cast<int64_t>(sizeof(float))}, xy.options());
  for (int64_t image0 = 0; image0 < num_images; image0 += batch) {
    const int64_t count = std::min(batch, num_images - image0);
    const int64_t slots = count * tiles * n;
    const dim3 grid(static_cast<unsigned>(count * tiles), groups);
    const dim3 block(kTile, kTile);
    rasterize_bwd_partial_kernel<CB, AA><<<grid, block, 0, stream>>>(
        v_out.const_data_ptr<float>(), xy.const_data_ptr<float>(), chol.const_data_ptr<float>(),
        rgb.const_data_ptr<float>(), opacity.const_data_ptr<float>(), n, channels, height, width, tiles_x, tiles_y,
        image0, slots, partial.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t gaussians = count * n;
    const int threads = 128;
    rasterize_bwd_reduce_kernel<CB, AA><<<static_cast<unsigned>((gaussians + threads - 1) / threads), threads, 0,
                                          stream>>>(
        xy.const_data_ptr<float>(), chol.const_data_ptr<float>(), opacity.const_data_ptr<float>(), n, channels,
        height, width, tiles_x, image0, gaussians, slots, groups, partial.const_data_ptr<float>(),
        v_xy.mutable_data_ptr<float>(), v_chol.mutable_data_ptr<float>(), v_rgb.mutable_data_ptr<float>(),
        v_opacity.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <bool AA, typename... Args>
void dispatch_bwd(int channels, Args&&... args) {
  switch (channels) {
    case 1: launch_bwd<1, AA>(args...); break;
    case 2: launch_bwd<2, AA>(args...); break;
    case 3: launch_bwd<3, AA>(args...); break;
    default: launch_bwd<4, AA>(args...); break;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_bwd_cuda(
    const at::Tensor& v_out, const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
    const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width, bool antialias) {
  const c10::cuda::CUDAGuard guard(xy.device());
  const OpInputs in = prepare_inputs(xy, chol, rgb, opacity, num_images, height, width, &v_out);
  auto grads = grad_outputs(in);
  if (in.empty) return grads;
  auto& [v_xy, v_chol, v_rgb, v_opacity] = grads;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(in.xy.device().index()).stream();
  const int ni = static_cast<int>(in.n), ci = static_cast<int>(in.channels);
  const int hi = static_cast<int>(height), wi = static_cast<int>(width);
  if (antialias) {
    dispatch_bwd<true>(ci, in.v_out, in.xy, in.chol, in.rgb, in.opacity, num_images, ni, ci, hi, wi, v_xy, v_chol,
                       v_rgb, v_opacity, stream);
  } else {
    dispatch_bwd<false>(ci, in.v_out, in.xy, in.chol, in.rgb, in.opacity, num_images, ni, ci, hi, wi, v_xy, v_chol,
                        v_rgb, v_opacity, stream);
  }
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(gsdd, CUDA, m) { m.impl("rasterize_bwd", &rasterize_bwd_cuda); }

}  // namespace gsdd

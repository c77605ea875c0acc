// The gsdd operator library: schemas (TORCH_LIBRARY, the one place they are defined) and the CPU
// implementations (TORCH_LIBRARY_IMPL(gsdd, CPU)). The CUDA implementations live in a second
// library (rasterize_fwd.cu, rasterize_bwd.cu) that is loaded after this one on GPU machines.
// Fake (meta) kernels and the autograd formula are registered from Python (gsdd_cuda/ops.py).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "cpu_kernels.h"

TORCH_LIBRARY(gsdd, m) {
  // Render B images of N Gaussians each. xy [B*N, 2] normalized means, chol [B*N, 3] =
  // (L11, L21, L22) in pixels (offset applied), rgb [B*N, C], opacity [B*N, 1] -> image [B, C, H, W].
  // float32 on CUDA; float32 or float64 on CPU.
  m.def(
      "rasterize_fwd(Tensor xy, Tensor chol, Tensor rgb, Tensor opacity, int num_images, "
      "int height, int width, bool antialias) -> Tensor");
  // Gradients of rasterize_fwd w.r.t. (xy, chol, rgb, opacity) given v_out = dL/dimage [B, C, H, W].
  // Atomic-free on both devices: bit-identical run to run.
  m.def(
      "rasterize_bwd(Tensor v_out, Tensor xy, Tensor chol, Tensor rgb, Tensor opacity, "
      "int num_images, int height, int width, bool antialias) -> (Tensor, Tensor, Tensor, Tensor)");
  // The kernels' projection, for tests: pixel centres [M, 2], conics [M, 3] and int32 tile boxes
  // [M, 4] = (x0, x1, y0, y1), all zeros for a Gaussian that cannot render (non-finite).
  m.def("project(Tensor xy, Tensor chol, int height, int width, bool antialias) -> (Tensor, Tensor, Tensor)");
}

namespace {

at::Tensor rasterize_fwd_cpu(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                             const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width,
                             bool antialias) {
  const gsdd::OpInputs in = gsdd::prepare_inputs(xy, chol, rgb, opacity, num_images, height, width);
  const auto shape = {num_images, in.channels, height, width};
  if (in.empty) return at::zeros(shape, in.xy.options());
  at::Tensor out = at::empty(shape, in.xy.options());  // every element is written by the kernel
  const int h = static_cast<int>(height), w = static_cast<int>(width);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    gsdd::cpu::rasterize_fwd<T>(in.xy.const_data_ptr<T>(), in.chol.const_data_ptr<T>(), in.rgb.const_data_ptr<T>(),
                                in.opacity.const_data_ptr<T>(), num_images, in.n, in.channels, h, w, antialias,
                                out.mutable_data_ptr<T>());
  };
  if (in.xy.scalar_type() == at::kDouble) {
    run(0.0);
  } else {
    run(0.0f);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_bwd_cpu(
    const at::Tensor& v_out, const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
    const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width, bool antialias) {
  const gsdd::OpInputs in = gsdd::prepare_inputs(xy, chol, rgb, opacity, num_images, height, width, &v_out);
  auto grads = gsdd::grad_outputs(in);
  if (in.empty) return grads;
  auto& [v_xy, v_chol, v_rgb, v_opacity] = grads;
  const int h = static_cast<int>(height), w = static_cast<int>(width);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    gsdd::cpu::rasterize_bwd<T>(in.v_out.const_data_ptr<T>(), in.xy.const_data_ptr<T>(), in.chol.const_data_ptr<T>(),
                                in.rgb.const_data_ptr<T>(), in.opacity.const_data_ptr<T>(), num_images, in.n,
                                in.channels, h, w, antialias, v_xy.mutable_data_ptr<T>(),
                                v_chol.mutable_data_ptr<T>(), v_rgb.mutable_data_ptr<T>(),
                                v_opacity.mutable_data_ptr<T>());
  };
  if (in.xy.scalar_type() == at::kDouble) {
    run(0.0);
  } else {
    run(0.0f);
  }
  return grads;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_cpu(const at::Tensor& xy_in, const at::Tensor& chol_in,
                                                           int64_t height, int64_t width, bool antialias) {
  gsdd::check_project_inputs(xy_in, chol_in, height, width);
  const at::Tensor xy = xy_in.contiguous(), chol = chol_in.contiguous();
  const int64_t count = xy.size(0);
  at::Tensor p = at::empty({count, 2}, xy.options());
  at::Tensor conic = at::empty({count, 3}, xy.options());
  at::Tensor box = at::empty({count, 4}, xy.options().dtype(at::kInt));
  auto run = [&](auto zero) {
    using T = decltype(zero);
    gsdd::cpu::project<T>(xy.const_data_ptr<T>(), chol.const_data_ptr<T>(), count, static_cast<int>(height),
                          static_cast<int>(width), antialias, p.mutable_data_ptr<T>(), conic.mutable_data_ptr<T>(),
                          box.mutable_data_ptr<int32_t>());
  };
  if (xy.scalar_type() == at::kDouble) {
    run(0.0);
  } else {
    run(0.0f);
  }
  return {p, conic, box};
}

}  // namespace

TORCH_LIBRARY_IMPL(gsdd, CPU, m) {
  m.impl("rasterize_fwd", &rasterize_fwd_cpu);
  m.impl("rasterize_bwd", &rasterize_bwd_cpu);
  m.impl("project", &project_cpu);
}

// The gsdd operator library: schemas (TORCH_LIBRARY, the one place they are defined) and the CPU
// implementations (TORCH_LIBRARY_IMPL(gsdd, CPU)). The CUDA implementations live in a second
// library (rasterize_fwd.cu, rasterize_bwd.cu) that is loaded after this one on GPU machines.
// Fake (meta) kernels and the autograd formula are registered from Python (gsdd_cuda/ops.py).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
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

at::Tensor rasterize_fwd_cpu(const at::Tensor& xy_in, const at::Tensor& chol_in, const at::Tensor& rgb_in,
                             const at::Tensor& opacity_in, int64_t num_images, int64_t height, int64_t width,
                             bool antialias) {
  const int64_t n = gsdd::check_inputs(xy_in, chol_in, rgb_in, opacity_in, num_images, height, width);
  const at::Tensor xy = xy_in.contiguous(), chol = chol_in.contiguous();
  const at::Tensor rgb = rgb_in.contiguous(), opacity = opacity_in.contiguous();
  const int64_t channels = rgb.size(1);
  if (n == 0 || height == 0 || width == 0) return at::zeros({num_images, channels, height, width}, xy.options());
  at::Tensor out = at::empty({num_images, channels, height, width}, xy.options());
  const int h = static_cast<int>(height), w = static_cast<int>(width);
  if (xy.scalar_type() == at::kDouble) {
    gsdd::cpu::rasterize_fwd<double>(xy.const_data_ptr<double>(), chol.const_data_ptr<double>(),
                                     rgb.const_data_ptr<double>(), opacity.const_data_ptr<double>(), num_images, n,
                                     channels, h, w, antialias, out.mutable_data_ptr<double>());
  } else {
    gsdd::cpu::rasterize_fwd<float>(xy.const_data_ptr<float>(), chol.const_data_ptr<float>(),
                                    rgb.const_data_ptr<float>(), opacity.const_data_ptr<float>(), num_images, n,
                                    channels, h, w, antialias, out.mutable_data_ptr<float>());
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_bwd_cpu(
    const at::Tensor& v_out_in, const at::Tensor& xy_in, const at::Tensor& chol_in, const at::Tensor& rgb_in,
    const at::Tensor& opacity_in, int64_t num_images, int64_t height, int64_t width, bool antialias) {
  const int64_t n = gsdd::check_inputs(xy_in, chol_in, rgb_in, opacity_in, num_images, height, width);
  const int64_t channels = rgb_in.size(1);
  gsdd::check_grad_output(v_out_in, xy_in, num_images, channels, height, width);
  const at::Tensor v_out = v_out_in.contiguous(), xy = xy_in.contiguous(), chol = chol_in.contiguous();
  const at::Tensor rgb = rgb_in.contiguous(), opacity = opacity_in.contiguous();
  if (n == 0 || height == 0 || width == 0) {
    return {at::zeros_like(xy), at::zeros_like(chol), at::zeros_like(rgb), at::zeros_like(opacity)};
  }
  // every element is written by the kernel
  at::Tensor v_xy = at::empty_like(xy), v_chol = at::empty_like(chol);
  at::Tensor v_rgb = at::empty_like(rgb), v_opacity = at::empty_like(opacity);
  const int h = static_cast<int>(height), w = static_cast<int>(width);
  if (xy.scalar_type() == at::kDouble) {
    gsdd::cpu::rasterize_bwd<double>(v_out.const_data_ptr<double>(), xy.const_data_ptr<double>(),
                                     chol.const_data_ptr<double>(), rgb.const_data_ptr<double>(),
                                     opacity.const_data_ptr<double>(), num_images, n, channels, h, w, antialias,
                                     v_xy.mutable_data_ptr<double>(), v_chol.mutable_data_ptr<double>(),
                                     v_rgb.mutable_data_ptr<double>(), v_opacity.mutable_data_ptr<double>());
  } else {
    gsdd::cpu::rasterize_bwd<float>(v_out.const_data_ptr<float>(), xy.const_data_ptr<float>(),
                                    chol.const_data_ptr<float>(), rgb.const_data_ptr<float>(),
                                    opacity.const_data_ptr<float>(), num_images, n, channels, h, w, antialias,
                                    v_xy.mutable_data_ptr<float>(), v_chol.mutable_data_ptr<float>(),
                                    v_rgb.mutable_data_ptr<float>(), v_opacity.mutable_data_ptr<float>());
  }
  return {v_xy, v_chol, v_rgb, v_opacity};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_cpu(const at::Tensor& xy_in, const at::Tensor& chol_in,
                                                           int64_t height, int64_t width, bool antialias) {
  TORCH_CHECK(height >= 0 && width >= 0 && height <= (1 << 20) && width <= (1 << 20),
              "gsdd: bad image size ", height, "x", width);
  TORCH_CHECK(xy_in.dim() == 2 && xy_in.size(1) == 2, "gsdd: xy must be [M, 2], got ", xy_in.sizes());
  TORCH_CHECK(chol_in.dim() == 2 && chol_in.size(1) == 3 && chol_in.size(0) == xy_in.size(0),
              "gsdd: chol must be [M, 3], got ", chol_in.sizes());
  TORCH_CHECK(xy_in.scalar_type() == chol_in.scalar_type() &&
                  (xy_in.scalar_type() == at::kFloat || xy_in.scalar_type() == at::kDouble),
              "gsdd: xy and chol must both be float32 or both float64");
  const at::Tensor xy = xy_in.contiguous(), chol = chol_in.contiguous();
  const int64_t count = xy.size(0);
  at::Tensor p = at::empty({count, 2}, xy.options());
  at::Tensor conic = at::empty({count, 3}, xy.options());
  at::Tensor box = at::empty({count, 4}, xy.options().dtype(at::kInt));
  const int h = static_cast<int>(height), w = static_cast<int>(width);
  if (xy.scalar_type() == at::kDouble) {
    gsdd::cpu::project<double>(xy.const_data_ptr<double>(), chol.const_data_ptr<double>(), count, h, w, antialias,
                               p.mutable_data_ptr<double>(), conic.mutable_data_ptr<double>(),
                               box.mutable_data_ptr<int32_t>());
  } else {
    gsdd::cpu::project<float>(xy.const_data_ptr<float>(), chol.const_data_ptr<float>(), count, h, w, antialias,
                              p.mutable_data_ptr<float>(), conic.mutable_data_ptr<float>(),
                              box.mutable_data_ptr<int32_t>());
  }
  return {p, conic, box};
}

}  // namespace

TORCH_LIBRARY_IMPL(gsdd, CPU, m) {
  m.impl("rasterize_fwd", &rasterize_fwd_cpu);
  m.impl("rasterize_bwd", &rasterize_bwd_cpu);
  m.impl("project", &project_cpu);
}

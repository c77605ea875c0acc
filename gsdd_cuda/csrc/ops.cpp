// Operator schemas of the gsdd namespace (one place, as in gsplat's ext.cpp and
// pytorch/extension-cpp). CUDA kernels register with TORCH_LIBRARY_IMPL(gsdd, CUDA, m) in
// rasterize_fwd.cu / rasterize_bwd.cu; fake (meta) kernels and autograd live in gsdd_cuda/ops.py.
#include <Python.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <tuple>

// Importing gsdd_cuda._C only has to run the static registrations below; the module itself is
// empty (no pybind11), so it never pins a Python ABI beyond the import hook.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // m_name
      NULL,  // m_doc
      -1,    // m_size
      NULL,  // m_methods
  };
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(gsdd, m) {
  // Render B images of N Gaussians each (SPEC.md §2); all tensors float32 on one CUDA device.
  // xy [B*N, 2] normalized means, chol [B*N, 3] = (L11, L21, L22) in pixels (offset applied),
  // rgb [B*N, C], opacity [B*N, 1]  ->  image [B, C, H, W].
  m.def(
      "rasterize_fwd(Tensor xy, Tensor chol, Tensor rgb, Tensor opacity, int num_images, "
      "int height, int width, bool antialias) -> Tensor");
  // Gradients of rasterize_fwd w.r.t. (xy, chol, rgb, opacity) given v_out = dL/dimage [B, C, H, W].
  m.def(
      "rasterize_bwd(Tensor v_out, Tensor xy, Tensor chol, Tensor rgb, Tensor opacity, "
      "int num_images, int height, int width, bool antialias) -> (Tensor, Tensor, Tensor, Tensor)");
}

namespace {

// CPU tensors reach these (instead of the dispatcher's generic "could not run ... CPU backend"):
// say what to do instead.
[[noreturn]] void cpu_unsupported() {
  TORCH_CHECK(false,
              "gsdd: the CUDA rasterizer needs CUDA tensors; on CPU use "
              "gsdd_cli.render.rasterize(..., backend='reference')");
}

at::Tensor rasterize_fwd_cpu(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                             int64_t, int64_t, int64_t, bool) {
  cpu_unsupported();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_bwd_cpu(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    int64_t, int64_t, int64_t, bool) {
  cpu_unsupported();
}

}  // namespace

TORCH_LIBRARY_IMPL(gsdd, CPU, m) {
  m.impl("rasterize_fwd", &rasterize_fwd_cpu);
  m.impl("rasterize_bwd", &rasterize_bwd_cpu);
}

// The advrobust operator library: schemas (once) and the Python module advrobust._C.
// Kernels register per backend in cpu/*.cpp and cuda/ops_cuda.cpp.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(advrobust, m) {
  m.def("linf_step(Tensor x_adv, Tensor grad, Tensor x_nat, Tensor alpha, Tensor eps, Tensor? lo, Tensor? hi) -> Tensor");
  m.def("l2_step(Tensor x_adv, Tensor grad, Tensor x_nat, Tensor alpha, Tensor eps, Tensor? lo, Tensor? hi) -> Tensor");
  m.def(
      "de_trial(Tensor population, Tensor donors, Tensor cross_u, Tensor cross_j, Tensor resample_u, "
      "Tensor lower, Tensor upper, float F, float CR, bool resample) -> Tensor");
  m.def("de_build(Tensor images, Tensor candidates, bool add) -> Tensor");
  m.def("de_select_(Tensor(a!) population, Tensor(b!) fitness, Tensor trial, Tensor trial_fitness) -> ()");
  m.def("mk_mmd(Tensor x, Tensor y, float[] sigmas, bool unbiased) -> Tensor");
  m.def("_mk_mmd_with_grad(Tensor x, Tensor y, float[] sigmas, bool unbiased) -> (Tensor, Tensor, Tensor)");
}

namespace {

PyObject* built_with_cuda(PyObject*, PyObject*) {
#ifdef ADVROBUST_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "True if the CUDA kernels were compiled in."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "advrobust's compiled operators (torch.ops.advrobust).", -1,
                      methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }

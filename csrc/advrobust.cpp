// The advrobust operator library and the Python module advrobust._C. Each op family
// defines its own schemas (TORCH_LIBRARY_FRAGMENT in <family>_schema.cpp) and registers its
// kernels per backend next to them (cpu/*.cpp, cuda/*_glue.cpp); this file only claims the
// namespace, so that no other library can define ops in it.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(advrobust, m) {}

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

// The bind_<topic> functions module.cpp calls, one per bindings/*.cpp file.
#pragma once

#include <pybind11/pybind11.h>

namespace fastseq::bindings {

void bind_kernels(pybind11::module_& m);

}  // namespace fastseq::bindings

# CUDA kernels (cpp/ops/*/*.cu): built when the building torch is a CUDA build and nvcc is
# found, unless MLPMIX_CUDA says otherwise.
#
#   MLPMIX_CUDA           environment variable (or -DMLPMIX_CUDA=...): unset or AUTO =
#                         automatic; 1/ON = required (a clear error when impossible);
#                         0/OFF = CPU kernels only.
#   TORCH_CUDA_ARCH_LIST  environment variable (or -D...): GPU architectures, default
#                         "8.0;9.0" (torch's CMake ignores CMAKE_CUDA_ARCHITECTURES).
#   nvcc                  $CUDACXX, else $CUDA_HOME/bin/nvcc, else the first nvcc on PATH.
#
# Included before find_package(Torch) (a CUDA torch's package enables CUDA itself) with
# _mlpmix_torch_cuda = torch.version.cuda or "none". Sets MLPMIX_WITH_CUDA and defines
# mlpmix_add_cuda_kernels(target).

if(DEFINED MLPMIX_CUDA)
  set(_mlpmix_cuda_request "${MLPMIX_CUDA}")
else()
  set(_mlpmix_cuda_request "$ENV{MLPMIX_CUDA}")
endif()
string(TOUPPER "${_mlpmix_cuda_request}" _mlpmix_cuda_mode)
set(_mlpmix_yes 1 ON YES TRUE)
set(_mlpmix_no 0 OFF NO FALSE)
if(_mlpmix_cuda_mode STREQUAL "" OR _mlpmix_cuda_mode STREQUAL "AUTO")
  set(_mlpmix_cuda_mode AUTO)
elseif(_mlpmix_cuda_mode IN_LIST _mlpmix_yes)
  set(_mlpmix_cuda_mode ON)
elseif(_mlpmix_cuda_mode IN_LIST _mlpmix_no)
  set(_mlpmix_cuda_mode OFF)
else()
  message(FATAL_ERROR "mlpmix: MLPMIX_CUDA must be 0, 1 or AUTO, got '${_mlpmix_cuda_request}'")
endif()

set(MLPMIX_WITH_CUDA OFF)
set(_mlpmix_cuda_major "")
if(NOT _mlpmix_torch_cuda STREQUAL "none")
  string(REGEX MATCH "^[0-9]+" _mlpmix_cuda_major "${_mlpmix_torch_cuda}")
  # Without a GPU torch's architecture detection fails; pick ours unless told otherwise.
  if(NOT DEFINED TORCH_CUDA_ARCH_LIST)
    if("$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
      set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
    else()
      set(TORCH_CUDA_ARCH_LIST "$ENV{TORCH_CUDA_ARCH_LIST}")
    endif()
  endif()
  # A CUDA torch's CMake package needs the toolkit even for CPU kernels only. It looks for
  # nvcc on PATH, where a wrapper script (/usr/local/bin/nvcc) would make it take the wrong
  # toolkit root: name the root of the compiler CMake finds.
  if("$ENV{CUDACXX}" STREQUAL "" AND EXISTS "$ENV{CUDA_HOME}/bin/nvcc")
    set(ENV{CUDACXX} "$ENV{CUDA_HOME}/bin/nvcc")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    if(NOT DEFINED CUDA_TOOLKIT_ROOT_DIR AND CMAKE_CUDA_COMPILER_TOOLKIT_ROOT)
      set(CUDA_TOOLKIT_ROOT_DIR "${CMAKE_CUDA_COMPILER_TOOLKIT_ROOT}")
    endif()
  endif()
endif()

if(_mlpmix_cuda_mode STREQUAL "OFF")
  message(STATUS "mlpmix: CUDA kernels off (MLPMIX_CUDA=${_mlpmix_cuda_request})")
elseif(_mlpmix_torch_cuda STREQUAL "none")
  if(_mlpmix_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR
      "mlpmix: MLPMIX_CUDA=1 asks for the CUDA kernels, but torch ${MLPMIX_TORCH_VERSION} is a "
      "CPU build (torch.version.cuda is None). Install a CUDA build of torch, or set "
      "MLPMIX_CUDA=0.")
  endif()
  message(STATUS "mlpmix: CUDA kernels off (torch ${MLPMIX_TORCH_VERSION} is a CPU build)")
elseif(CMAKE_CUDA_COMPILER)
  set(MLPMIX_WITH_CUDA ON)
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  message(STATUS "mlpmix: CUDA kernels on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                 "architectures ${TORCH_CUDA_ARCH_LIST})")
elseif(_mlpmix_cuda_mode STREQUAL "ON")
  message(FATAL_ERROR
    "mlpmix: MLPMIX_CUDA=1 asks for the CUDA kernels, but no CUDA compiler (nvcc) was found. "
    "Set CUDA_HOME to the CUDA ${_mlpmix_torch_cuda} toolkit (e.g. "
    "/usr/local/cuda-${_mlpmix_cuda_major}.0) or CUDACXX to its nvcc, or set MLPMIX_CUDA=0.")
else()
  message(WARNING
    "mlpmix: torch ${MLPMIX_TORCH_VERSION} is a CUDA ${_mlpmix_torch_cuda} build but no nvcc "
    "was found, so the CUDA kernels are not built (and torch's CMake package, which needs the "
    "CUDA toolkit, may fail next). Set CUDA_HOME or CUDACXX.")
endif()

function(mlpmix_add_cuda_kernels target)
  file(GLOB _sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/cpp/ops/*/*.cu")
  target_sources(${target} PRIVATE ${_sources})
  # ATen/cuda/CUDAContext.h includes cuBLAS/cuSPARSE/cuSOLVER headers; a toolkit with only
  # nvcc and cudart lacks them, and the torch wheel's nvidia packages ship them.
  cmake_path(GET _mlpmix_torch_prefix PARENT_PATH _site)  # .../torch/share
  cmake_path(GET _site PARENT_PATH _site)                 # .../torch
  cmake_path(GET _site PARENT_PATH _site)                 # site-packages
  set(_wheel_cuda "${_site}/nvidia/cu${_mlpmix_cuda_major}")
  if(NOT EXISTS "${CMAKE_CUDA_COMPILER_TOOLKIT_ROOT}/include/cublas_v2.h"
     AND EXISTS "${_wheel_cuda}/include/cublas_v2.h")
    target_include_directories(${target} SYSTEM PRIVATE "${_wheel_cuda}/include")
  endif()
  # One CUDA runtime in the process: torch's shared libcudart, from the wheel's nvidia
  # package next to site-packages/torch once installed.
  set_target_properties(${target} PROPERTIES CUDA_RUNTIME_LIBRARY Shared)
  set_property(TARGET ${target} APPEND PROPERTY
               INSTALL_RPATH "$ORIGIN/../../nvidia/cu${_mlpmix_cuda_major}/lib")
endfunction()

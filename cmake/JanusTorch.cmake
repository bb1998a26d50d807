# Locate LibTorch. Order: an explicit Torch_DIR; else ask a Python interpreter for torch.utils.cmake_prefix_path
# (JANUS_TORCH_PYTHON, default the project venv in $JANUS_DEPS or ~/.cache/janus).
if(NOT Torch_DIR)
  if(NOT JANUS_TORCH_PYTHON)
    if(DEFINED ENV{JANUS_DEPS})
      set(_janus_deps "$ENV{JANUS_DEPS}")
    else()
      set(_janus_deps "$ENV{HOME}/.cache/janus")
    endif()
    if(EXISTS "${_janus_deps}/venv/bin/python")
      set(JANUS_TORCH_PYTHON "${_janus_deps}/venv/bin/python")
    else()
      find_program(JANUS_TORCH_PYTHON NAMES python3 python)
    endif()
  endif()
  execute_process(
    COMMAND "${JANUS_TORCH_PYTHON}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _janus_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _janus_rc)
  if(NOT _janus_rc EQUAL 0)
    message(FATAL_ERROR "janus: cannot import torch with ${JANUS_TORCH_PYTHON}; run tools/setup.sh "
                        "or pass -DTorch_DIR=... / -DJANUS_TORCH_PYTHON=...")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${_janus_torch_prefix}")
endif()
set(JANUS_TORCH_PYTHON "${JANUS_TORCH_PYTHON}" CACHE FILEPATH "Python whose torch provides LibTorch (and runs oracles)")

# The CUDA wheel's TorchConfig looks for the CUDA toolkit; /usr/local/cuda is where it lives here.
if(NOT CMAKE_CUDA_COMPILER AND EXISTS "/usr/local/cuda/bin/nvcc")
  set(CMAKE_CUDA_COMPILER "/usr/local/cuda/bin/nvcc")
endif()
if(NOT DEFINED TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "9.0")
endif()
find_package(Torch REQUIRED)
message(STATUS "janus: LibTorch ${Torch_VERSION} from ${Torch_DIR}")

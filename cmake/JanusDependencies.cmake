# System dependencies, all from Debian -dev packages (tools/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs videoio)
# SentencePiece (tokenizer) and zlib (gzipped IDX files) are PRIVATE dependencies of janus: no public header
# includes them, so janusConfig.cmake needs no find_dependency for either.
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_library(JANUS_SENTENCEPIECE_TRAIN_LIB sentencepiece_train REQUIRED)
find_package(ZLIB REQUIRED)
# cpp-httplib (Debian libcpp-httplib-dev: compiled library + pkg-config), the inference server's HTTP layer. PRIVATE
# to janus and only to the one source that includes httplib.h (src/CMakeLists.txt), so its compile definitions do
# not change the flags (and ccache keys) of every other source.
pkg_check_modules(HTTPLIB REQUIRED cpp-httplib)
find_library(JANUS_HTTPLIB_LIB NAMES cpp-httplib HINTS ${HTTPLIB_LIBRARY_DIRS} REQUIRED)
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  find_path(JANUS_CLI11_INCLUDE CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${JANUS_CLI11_INCLUDE})
endif()

# LibTorch's wheel ships fmt 12 headers in its include directory, which would shadow Debian's fmt 9 that
# Debian's spdlog is built against. A shim directory holding only a link to Debian's fmt headers is put in front
# of torch's include directories, so every <fmt/...> resolves to the fmt spdlog was built with. (Torch's own
# compiled code keeps its private fmt::v12; the inline namespaces keep the two apart.)
get_target_property(_janus_fmt_inc fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
if(NOT _janus_fmt_inc)
  set(_janus_fmt_inc "/usr/include")
endif()
list(GET _janus_fmt_inc 0 JANUS_FMT_INCLUDE_DIR)
set(JANUS_FMT_SHIM "${PROJECT_BINARY_DIR}/janus_fmt_shim")
file(MAKE_DIRECTORY "${JANUS_FMT_SHIM}")
if(NOT EXISTS "${JANUS_FMT_SHIM}/fmt")
  file(CREATE_LINK "${JANUS_FMT_INCLUDE_DIR}/fmt" "${JANUS_FMT_SHIM}/fmt" SYMBOLIC)
endif()

// Compiled only to produce the shared precompiled header (see src/CMakeLists.txt).

# ccache with the sloppiness precompiled headers need, and paths relative to the source tree so clones and
# worktrees share hits; a no-op when ccache is missing.
if(JANUS_USE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(JANUS_CCACHE ccache)
  if(JANUS_CCACHE)
    set(CMAKE_CXX_COMPILER_LAUNCHER
        ${CMAKE_COMMAND} -E env "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
        "CCACHE_BASEDIR=${PROJECT_SOURCE_DIR}"
        ${JANUS_CCACHE})
  endif()
endif()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS janus EXPORT janusTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/janus" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT janusTargets NAMESPACE janus:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/janus)
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/janusConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/janusConfig.cmake" INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/janus)
write_basic_package_version_file("${PROJECT_BINARY_DIR}/janusConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/janusConfig.cmake" "${PROJECT_BINARY_DIR}/janusConfigVersion.cmake"
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/janus)

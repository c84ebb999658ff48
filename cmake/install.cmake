# Install rules: headers, libopennsa.so + libopennsa.a, the OpenNSA CMake package (OpenNSA::opennsa,
# OpenNSA::opennsa_static) and opennsa.pc. Included at the end of the root CMakeLists.txt.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The shared library exports the public API only. -fvisibility=hidden hides the library's own
# symbols; the version script also hides the standard-library template instances (shared_ptr
# control blocks, ...) that would otherwise leak into the dynamic symbol table.
if(NOT APPLE AND NOT WIN32)  # GNU ld / lld / gold syntax
  target_link_options(opennsa PRIVATE "LINKER:--version-script=${CMAKE_CURRENT_LIST_DIR}/opennsa.map")
  set_property(TARGET opennsa APPEND PROPERTY LINK_DEPENDS "${CMAKE_CURRENT_LIST_DIR}/opennsa.map")
endif()

# Consumers of the C++ header need C++20 (std::span); C consumers are unaffected.
target_compile_features(opennsa INTERFACE cxx_std_20)
target_compile_features(opennsa_static INTERFACE cxx_std_20)

install(DIRECTORY
    ${PROJECT_SOURCE_DIR}/include/opennsa
    ${PROJECT_SOURCE_DIR}/include/acl
    ${PROJECT_SOURCE_DIR}/include/aclnn
    ${PROJECT_SOURCE_DIR}/include/aclnnop
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")

install(TARGETS opennsa opennsa_static
  EXPORT OpenNSATargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(OPENNSA_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/OpenNSA)
install(EXPORT OpenNSATargets NAMESPACE OpenNSA:: DESTINATION ${OPENNSA_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/OpenNSAConfig.cmake.in
  ${PROJECT_BINARY_DIR}/OpenNSAConfig.cmake INSTALL_DESTINATION ${OPENNSA_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/OpenNSAConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/OpenNSAConfig.cmake ${PROJECT_BINARY_DIR}/OpenNSAConfigVersion.cmake
  DESTINATION ${OPENNSA_CMAKE_DIR})

# pkg-config: `pkg-config --cflags --libs opennsa` (add --static for libopennsa.a). The prefix is
# found relative to the .pc file, so `cmake --install --prefix DIR` gives a correct file too.
file(RELATIVE_PATH OPENNSA_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(${CMAKE_CURRENT_LIST_DIR}/opennsa.pc.in ${PROJECT_BINARY_DIR}/opennsa.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/opennsa.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

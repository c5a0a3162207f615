# EvhInstall.cmake - what `cmake --install` puts under the prefix:
#
#   bin/evhost                                  the daemon and CLI
#   lib/evhost/plugins/event-sources/<id>/      built-in plugins, as plugin folders
#   lib/evhost/plugins/steps/<id>/              (each evh_add_plugin built-in
#                                               installs itself: cmake/EvhPlugin.cmake)
#   share/evhost/examples/{workflows,triggers}/ what the daemon runs with no settings
#   include/evhost/evhost.h                     the SDK: the one header plugins use
#   lib/pkgconfig/evhost-sdk.pc                 `pkg-config --cflags evhost-sdk`
#   lib/cmake/evhost-sdk/                       find_package(evhost-sdk): evhost::sdk
#                                               and evh_add_plugin()
#
# The directories are fixed ("lib", not GNUInstallDirs' lib64 or multiarch
# ones) because the daemon looks for them at <prefix>/lib/evhost/plugins and
# <prefix>/share/evhost/examples (EVH_INSTALL_PLUGIN_DIR, ..._EXAMPLES_DIR).
# Everything is relocatable: `cmake --install build --prefix DIR` (or DESTDIR
# staging) works, and an installed evhost finds its plugins and examples
# relative to its own binary before the configured prefix.
include(CMakePackageConfigHelpers)

# The SDK's version is its ABI, read from the header: find_package(evhost-sdk
# 1.0) and `pkg-config --atleast-version=1.0 evhost-sdk` then mean what the
# loader means by ABI compatibility (same major, minor at least).
# (read again whenever the header changes, or a new minor installs stale)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${CMAKE_SOURCE_DIR}/sdk/include/evhost/evhost.h)
file(STRINGS ${CMAKE_SOURCE_DIR}/sdk/include/evhost/evhost.h _evh_abi_lines
     REGEX "^#define EVH_ABI_(MAJOR|MINOR) +[0-9]+")
string(REGEX MATCH "MAJOR +([0-9]+)" _evh_m "${_evh_abi_lines}")
set(_evh_abi_major ${CMAKE_MATCH_1})
string(REGEX MATCH "MINOR +([0-9]+)" _evh_m "${_evh_abi_lines}")
set(EVH_SDK_ABI ${_evh_abi_major}.${CMAKE_MATCH_1})
if(NOT EVH_SDK_ABI MATCHES "^[0-9]+\\.[0-9]+$")
  message(FATAL_ERROR "cannot read EVH_ABI_MAJOR/MINOR from sdk/include/evhost/evhost.h")
endif()

install(TARGETS evhost RUNTIME DESTINATION bin)
install(FILES ${EVH_EXAMPLE_WORKFLOWS} DESTINATION share/evhost/examples/workflows)
install(FILES ${CMAKE_SOURCE_DIR}/workflows/triggers/examples.yaml
        DESTINATION share/evhost/examples/triggers)
install(FILES ${CMAKE_SOURCE_DIR}/sdk/include/evhost/evhost.h DESTINATION include/evhost)

# The CMake package.  ARCH_INDEPENDENT: the SDK is a header.
set(_evh_pkg_dir ${CMAKE_BINARY_DIR}/evhost-sdk)
write_basic_package_version_file(${_evh_pkg_dir}/evhost-sdkConfigVersion.cmake
  VERSION ${EVH_SDK_ABI} COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_SOURCE_DIR}/cmake/evhost-sdkConfig.cmake
              ${CMAKE_SOURCE_DIR}/cmake/EvhPluginModule.cmake
              ${_evh_pkg_dir}/evhost-sdkConfigVersion.cmake
        DESTINATION lib/cmake/evhost-sdk)

# pkg-config: the file finds its prefix from where it lies (${pcfiledir}),
# so neither `--prefix` nor copying the tree later leaves it pointing at
# the wrong place; only the ABI is filled in.
configure_file(${CMAKE_SOURCE_DIR}/cmake/evhost-sdk.pc.in ${_evh_pkg_dir}/evhost-sdk.pc @ONLY)
install(FILES ${_evh_pkg_dir}/evhost-sdk.pc DESTINATION lib/pkgconfig)

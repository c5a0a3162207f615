# evhost-sdkConfig.cmake - find_package(evhost-sdk) for evhost plugin authors.
#
#   cmake_minimum_required(VERSION 3.18)
#   project(my-timer C)
#   find_package(evhost-sdk 1.0 REQUIRED)       # the version is the SDK ABI
#   evh_add_plugin(my-timer KIND source SOURCES my_timer.c)
#
# Provides:
#   evhost::sdk            an INTERFACE target: the SDK include directory.
#                          Plugins link nothing of evhost; this is all.
#   evh_add_plugin(<id> KIND source|step SOURCES <files...>
#                  [LIBRARIES <libs...>] [OUTPUT_DIR <dir>] [MANIFEST <file>])
#                          builds target <id>: <id>.so exporting only
#                          evh_plugin_entry (hidden visibility, a version
#                          script, -Wl,--no-undefined), with plugin.json
#                          (MANIFEST, default ./plugin.json) copied next to it
#                          in OUTPUT_DIR (default <build>/plugins/<id>), so
#                          `evhost run --plugin-dir <build>/plugins` loads it.
#                          `cmake --install <build> --prefix DIR` installs the
#                          plugin folder as DIR/<id>/.
#   EVHOST_SDK_INCLUDE_DIR the directory holding evhost/evhost.h.
#   EVHOST_SDK_ABI         "MAJOR.MINOR" of the installed header.
if(CMAKE_VERSION VERSION_LESS 3.18)
  message(FATAL_ERROR "evhost-sdk needs CMake 3.18 or newer (this is ${CMAKE_VERSION})")
endif()

# The package is relocatable: everything is found from this file's place,
# <prefix>/lib/cmake/evhost-sdk/.
get_filename_component(_evh_sdk_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(EVHOST_SDK_INCLUDE_DIR "${_evh_sdk_prefix}/include")
set(EVHOST_SDK_ABI "${evhost-sdk_VERSION}")
if(NOT EXISTS "${EVHOST_SDK_INCLUDE_DIR}/evhost/evhost.h")
  set(evhost-sdk_FOUND FALSE)
  set(evhost-sdk_NOT_FOUND_MESSAGE "${EVHOST_SDK_INCLUDE_DIR}/evhost/evhost.h is missing")
  return()
endif()

if(NOT TARGET evhost::sdk)
  add_library(evhost::sdk INTERFACE IMPORTED)
  set_target_properties(evhost::sdk PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${EVHOST_SDK_INCLUDE_DIR}")
endif()

include("${CMAKE_CURRENT_LIST_DIR}/EvhPluginModule.cmake")

# `cmake --install` of a plugin makes plugin folders: keep them 0755 whatever
# the umask, since evhost refuses folders writable by group or others.
if(NOT DEFINED CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS)
  set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
      OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endif()

function(evh_add_plugin id)
  cmake_parse_arguments(P "" "KIND;OUTPUT_DIR;MANIFEST" "SOURCES;LIBRARIES" ${ARGN})
  _evh_plugin_kind_dir(kind_dir ${id} "${P_KIND}")
  if(NOT P_OUTPUT_DIR)
    set(P_OUTPUT_DIR "${CMAKE_BINARY_DIR}/plugins/${id}")
  endif()
  if(NOT P_MANIFEST)
    set(P_MANIFEST "${CMAKE_CURRENT_SOURCE_DIR}/plugin.json")
  endif()
  _evh_plugin_module(${id} ${id} OUTPUT_DIR "${P_OUTPUT_DIR}" MANIFEST "${P_MANIFEST}"
                     SOURCES ${P_SOURCES} LIBRARIES evhost::sdk ${P_LIBRARIES})
  # The install prefix is the plugin directory: DIR/<id>/{plugin.json,<id>.so}.
  install(TARGETS ${id} LIBRARY DESTINATION ${id})
  install(FILES "${P_MANIFEST}" DESTINATION ${id} RENAME plugin.json)
endfunction()

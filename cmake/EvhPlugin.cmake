# evh_add_plugin(<id> KIND source|step SOURCES <files...> [LIBRARIES <libs...>]
#                [OUTPUT_DIR <dir>] [MANIFEST <plugin.json>])
#
# Builds a plugin the way third-party authors must: a MODULE (.so) named
# <id>.so that sees only the SDK header (never host headers or libraries),
# compiled with hidden visibility so the one symbol it exports is the entry
# function that EVH_DECLARE_SOURCE/STEP marks (cmake/EvhPluginModule.cmake,
# shared with the installed CMake package).  The library and a copy of
# plugin.json land in one folder, a ready-to-scan plugin folder.
#
# Without OUTPUT_DIR the plugin is a built-in: it goes to
#   ${EVH_BUILD_PLUGIN_DIR}/event-sources/<id>/  or  .../steps/<id>/
# where a build-tree daemon finds it, and `cmake --install` puts the same
# folder under <prefix>/lib/evhost/plugins/.  Fixture and benchmark plugins
# name an OUTPUT_DIR and are never installed.
include(${CMAKE_CURRENT_LIST_DIR}/EvhPluginModule.cmake)

# The loader refuses plugin folders writable by group or others, so the
# installed folders must not inherit a permissive umask.
if(NOT DEFINED CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS)
  set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
      OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endif()

function(evh_add_plugin id)
  cmake_parse_arguments(P "" "KIND;OUTPUT_DIR;MANIFEST" "SOURCES;LIBRARIES" ${ARGN})
  _evh_plugin_kind_dir(kind_dir ${id} "${P_KIND}")
  set(builtin FALSE)
  if(NOT P_OUTPUT_DIR)
    set(builtin TRUE)
    set(P_OUTPUT_DIR ${EVH_BUILD_PLUGIN_DIR}/${kind_dir}/${id})
  endif()
  if(NOT P_MANIFEST)
    set(P_MANIFEST ${CMAKE_CURRENT_SOURCE_DIR}/plugin.json)
  endif()
  set(target evh_plugin_${id})
  string(REPLACE "-" "_" target ${target})
  _evh_plugin_module(${target} ${id} OUTPUT_DIR ${P_OUTPUT_DIR} MANIFEST ${P_MANIFEST}
                     SOURCES ${P_SOURCES} LIBRARIES ${P_LIBRARIES})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/sdk/include)
  if(EVH_SANITIZE OR EVH_TSAN)
    # A sanitized host provides the runtime; the plugin may use it unresolved.
    target_link_options(${target} PRIVATE -Wl,--allow-shlib-undefined -Wl,-z,undefs)
  endif()
  set_property(GLOBAL APPEND PROPERTY EVH_PLUGIN_TARGETS ${target})
  if(builtin)
    set(dest lib/evhost/plugins/${kind_dir}/${id})
    install(TARGETS ${target} LIBRARY DESTINATION ${dest})
    install(FILES ${P_MANIFEST} DESTINATION ${dest} RENAME plugin.json)
    set_property(GLOBAL APPEND PROPERTY EVH_BUILTIN_PLUGINS ${kind_dir}/${id})
  endif()
endfunction()

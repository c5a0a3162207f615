# evh_add_plugin(<id> KIND source|step SOURCES <files...> [OUTPUT_DIR <dir>])
#
# Builds a plugin the way third-party authors must: a MODULE (.so) named
# <id>.so that sees only the SDK header (never host headers or libraries),
# compiled with hidden visibility so the one symbol it exports is the entry
# function that EVH_DECLARE_SOURCE/STEP marks.  The library and a copy of
# plugin.json land in one folder, a ready-to-scan plugin folder:
#   ${EVH_BUILD_PLUGIN_DIR}/event-sources/<id>/  or  .../steps/<id>/
function(evh_add_plugin id)
  cmake_parse_arguments(P "" "KIND;OUTPUT_DIR;MANIFEST" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT P_OUTPUT_DIR)
    if(P_KIND STREQUAL "source")
      set(P_OUTPUT_DIR ${EVH_BUILD_PLUGIN_DIR}/event-sources/${id})
    elseif(P_KIND STREQUAL "step")
      set(P_OUTPUT_DIR ${EVH_BUILD_PLUGIN_DIR}/steps/${id})
    else()
      message(FATAL_ERROR "evh_add_plugin(${id}): KIND must be source or step")
    endif()
  endif()
  if(NOT P_MANIFEST)
    set(P_MANIFEST ${CMAKE_CURRENT_SOURCE_DIR}/plugin.json)
  endif()
  set(target evh_plugin_${id})
  string(REPLACE "-" "_" target ${target})
  add_library(${target} MODULE ${P_SOURCES})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/sdk/include)
  target_link_libraries(${target} PRIVATE ${P_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME ${id}
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIR})
  # Plugins must not depend on host symbols: fail the link if they do.
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  if(EVH_SANITIZE)
    # A sanitized host provides the runtime; the plugin may use it unresolved.
    target_link_options(${target} PRIVATE -Wl,--allow-shlib-undefined -Wl,-z,undefs)
  endif()
  set_property(GLOBAL APPEND PROPERTY EVH_PLUGIN_TARGETS ${target})
  configure_file(${P_MANIFEST} ${P_OUTPUT_DIR}/plugin.json COPYONLY)
endfunction()

# EvhPluginModule.cmake - how an evhost plugin library is built, defined once.
#
# Included by the in-tree helper (cmake/EvhPlugin.cmake) and installed beside
# the CMake package (lib/cmake/evhost-sdk/), so built-in and third-party
# plugins are linked the same way.  Requires CMake 3.18.
include_guard(GLOBAL)

# _evh_plugin_kind_dir(<out-var> <id> <kind>): "event-sources" for KIND source,
# "steps" for KIND step, a fatal error otherwise.
function(_evh_plugin_kind_dir out id kind)
  if(kind STREQUAL "source")
    set(${out} event-sources PARENT_SCOPE)
  elseif(kind STREQUAL "step")
    set(${out} steps PARENT_SCOPE)
  else()
    message(FATAL_ERROR "evh_add_plugin(${id}): KIND must be source or step, got '${kind}'")
  endif()
endfunction()

# _evh_plugin_module(<target> <id> OUTPUT_DIR <dir> MANIFEST <plugin.json>
#                    SOURCES <files...> [LIBRARIES <libs...>])
#
# A MODULE named <id>.so in OUTPUT_DIR with a copy of the manifest next to it
# as plugin.json: a plugin folder the daemon can load as it is.  The library
# exports exactly the entry function:
#   - hidden visibility, so the compiler emits nothing else as exported;
#   - a version script that makes everything but evh_plugin_entry local, which
#     also covers code that asks for default visibility and objects of static
#     libraries built without -fvisibility=hidden;
#   - --no-undefined: a plugin may use only the host API table handed to its
#     init, never a host symbol, so an unresolved symbol fails the link here
#     instead of dlopen failing on an operator's machine.
function(_evh_plugin_module target id)
  cmake_parse_arguments(P "" "OUTPUT_DIR;MANIFEST" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT P_SOURCES)
    message(FATAL_ERROR "evh_add_plugin(${id}): SOURCES is empty")
  endif()
  if(NOT EXISTS "${P_MANIFEST}")
    message(FATAL_ERROR "evh_add_plugin(${id}): no manifest at ${P_MANIFEST}")
  endif()
  set(exports "${CMAKE_BINARY_DIR}/evh_plugin_exports.map")
  file(CONFIGURE OUTPUT "${exports}"
       CONTENT "/* generated: an evhost plugin exports its entry function only */\n{\n  global: evh_plugin_entry;\n  local: *;\n};\n")
  add_library(${target} MODULE ${P_SOURCES})
  target_link_libraries(${target} PRIVATE ${P_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    PREFIX "" SUFFIX ".so" OUTPUT_NAME ${id}
    C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIR}
    LINK_DEPENDS "${exports}")
  target_link_options(${target} PRIVATE -Wl,--no-undefined -Wl,--exclude-libs,ALL
                      "-Wl,--version-script=${exports}")
  configure_file(${P_MANIFEST} ${P_OUTPUT_DIR}/plugin.json COPYONLY)
endfunction()

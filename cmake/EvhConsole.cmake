# The web console: the files in host/console/ become byte arrays in a
# generated C file linked into evhost_core (served by host/src/api_console.c).
# No build step for the console itself and no tool beyond CMake: the
# generator is a CMake script (EvhConsoleEmbed.cmake), so its output depends
# only on the files' bytes and names (deterministic, no timestamps).
file(GLOB EVH_CONSOLE_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/host/console/*)
set(EVH_CONSOLE_C ${CMAKE_BINARY_DIR}/generated/console_assets.c)
add_custom_command(
  OUTPUT ${EVH_CONSOLE_C}
  COMMAND ${CMAKE_COMMAND} -DSRC_DIR=${CMAKE_SOURCE_DIR}/host/console -DOUT=${EVH_CONSOLE_C}
          -P ${CMAKE_SOURCE_DIR}/cmake/EvhConsoleEmbed.cmake
  DEPENDS ${EVH_CONSOLE_FILES} ${CMAKE_SOURCE_DIR}/cmake/EvhConsoleEmbed.cmake
  COMMENT "Embedding the web console (host/console/)"
  VERBATIM)
target_sources(evhost_core PRIVATE ${EVH_CONSOLE_C})

# Installs the built talon into a scratch prefix, then builds a tiny
# program against the installed copy twice: with pkg-config and with
# find_package(talon). Run by ctest as install_consumer.
set(prefix "${WORK}/prefix")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(LAST_OUT "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install "${BIN}" --prefix "${prefix}")

# 1. pkg-config
find_program(PKG_CONFIG pkg-config REQUIRED)
find_program(CC NAMES cc gcc REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig:${prefix}/lib/x86_64-linux-gnu/pkgconfig")
run(${PKG_CONFIG} --cflags --libs talon)
string(STRIP "${LAST_OUT}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CC} -std=c11 -Wall -Werror "${SRC}/tests/install/consumer/main.c" ${flags}
    -o "${WORK}/consumer_pc")
foreach(libdir lib lib/x86_64-linux-gnu)
  set(ENV{LD_LIBRARY_PATH} "${prefix}/${libdir}:$ENV{LD_LIBRARY_PATH}")
endforeach()
run("${WORK}/consumer_pc")
if(NOT LAST_OUT MATCHES "talon ok")
  message(FATAL_ERROR "pkg-config consumer printed: ${LAST_OUT}")
endif()

# 2. find_package(talon)
run(${CMAKE_COMMAND} -S "${SRC}/tests/install/consumer" -B "${WORK}/cm"
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build "${WORK}/cm")
run("${WORK}/cm/consumer")
if(NOT LAST_OUT MATCHES "talon ok")
  message(FATAL_ERROR "find_package consumer printed: ${LAST_OUT}")
endif()
message(STATUS "install consumer: pkg-config and find_package both work")

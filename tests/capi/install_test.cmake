# The install test (cmake -P): install the build tree into a fresh prefix, then build and run
# consumers against it: a CMake project (find_package, shared and static, C and C++), and plain
# compiler command lines from `pkg-config --cflags --libs opennsa` (the consumer and the backward
# example). Inputs: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR, CXX, CC, EXTRA_FLAGS (sanitizers),
# and for a cross build TOOLCHAIN_FILE and EMULATOR (the command that runs a target program, its
# words separated by '|'; empty when the consumers run directly).
cmake_minimum_required(VERSION 3.20)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("$ ${ARGN}\n${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()

string(REPLACE "|" ";" emulator "${EMULATOR}")
set(toolchain_arg "")
if(TOOLCHAIN_FILE)
  set(toolchain_arg -DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN_FILE})
endif()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/acl/acl.h include/aclnn/acl_meta.h include/aclnnop/aclnn_nsa_selected_attention_grad.h
          include/opennsa/opennsa.hpp lib/libopennsa.a lib/cmake/OpenNSA/OpenNSAConfig.cmake
          lib/cmake/OpenNSA/OpenNSAConfigVersion.cmake lib/pkgconfig/opennsa.pc)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# find_package.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/capi/consumer -B ${WORK_DIR}/cmake -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} ${toolchain_arg} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_C_COMPILER=${CC} -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_CXX_FLAGS=${EXTRA_FLAGS}" "-DCMAKE_C_FLAGS=${EXTRA_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake)
foreach(exe consumer consumer_static consumer_c)
  run(${emulator} ${WORK_DIR}/cmake/${exe})
endforeach()

# pkg-config and plain command lines.
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${prefix}/lib/pkgconfig pkg-config --cflags --libs opennsa
                OUTPUT_VARIABLE pc RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs opennsa failed")
endif()
message("pkg-config --cflags --libs opennsa: ${pc}")
separate_arguments(pc UNIX_COMMAND "${pc}")
separate_arguments(extra UNIX_COMMAND "${EXTRA_FLAGS}")
foreach(pair "consumer_pc;tests/capi/consumer/main.cpp" "grad_example_pc;examples/nsa_grad_example.cpp")
  list(GET pair 0 exe)
  list(GET pair 1 src)
  run(${CXX} -std=c++20 ${extra} ${SOURCE_DIR}/${src} ${pc} -Wl,-rpath,${prefix}/lib -o ${WORK_DIR}/${exe})
  run(${emulator} ${WORK_DIR}/${exe})
endforeach()

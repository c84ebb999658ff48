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
          include/aclnn/opdev/fp16_t.h include/aclnn/opdev/bfloat16.h include/aclnn/opdev/opennsa_float16.h
          include/aclnnop/aclnn_nsa_compress.h include/aclnnop/aclnn_nsa_compress_grad.h
          include/aclnnop/aclnn_nsa_compress_attention.h include/aclnnop/aclnn_nsa_compress_attention_infer.h
          include/aclnnop/aclnn_nsa_compress_with_cache.h include/aclnnop/aclnn_nsa_selected_attention_infer.h
          include/aclnnop/aclnn_nsa_select_attention_infer.h
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

# CANN-style programs, built the way CANN's sample CMakeLists builds them: C++11, the include root
# plus include/aclnn and include/aclnnop, the shared library. The implemented operators' programs
# run; the others (operators not implemented yet) are compiled only.
set(cann_flags -std=c++11 -I${prefix}/include -I${prefix}/include/aclnn -I${prefix}/include/aclnnop)
foreach(name nsa_selected_attention nsa_selected_attention_grad nsa_select_attention_infer)
  run(${CXX} ${cann_flags} ${extra} ${SOURCE_DIR}/tests/capi/cann_programs/${name}.cpp -L${prefix}/lib -lopennsa
      -Wl,-rpath,${prefix}/lib -o ${WORK_DIR}/cann_${name})
  run(${emulator} ${WORK_DIR}/cann_${name})
endforeach()
foreach(name nsa_compress_attention)
  run(${CXX} ${cann_flags} ${extra} -c ${SOURCE_DIR}/tests/capi/cann_programs/${name}.cpp -o ${WORK_DIR}/cann_${name}.o)
endforeach()

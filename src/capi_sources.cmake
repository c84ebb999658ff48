# The CANN-compatible C layer: runtime (device, contexts, streams, memory, errors) and aclnn (meta objects,
# executors, operator entry points). Included by src/CMakeLists.txt before the library targets.
list(APPEND OPENNSA_CORE_SOURCES
  runtime/last_error.cpp
  runtime/stream.cpp
  runtime/context.cpp
  runtime/memory.cpp
  runtime/acl_dtype.cpp
  aclnn/meta.cpp
  aclnn/convert.cpp
  aclnn/executor.cpp
)
# One thin file per operator: aclnn/nsa_<operator>.cpp.
file(GLOB OPENNSA_ACLNN_OP_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/aclnn/nsa_*.cpp)
list(APPEND OPENNSA_CORE_SOURCES ${OPENNSA_ACLNN_OP_SOURCES})

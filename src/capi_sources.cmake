# The CANN-compatible C layer: runtime (device, contexts, streams, memory, errors) and aclnn (meta objects,
# executors, operator entry points). Included by src/CMakeLists.txt before the library targets.
list(APPEND OPENNSA_CORE_SOURCES
  runtime/last_error.cpp
  runtime/stream.cpp
  runtime/context.cpp
  runtime/memory.cpp
  runtime/dtype.cpp
  aclnn/meta.cpp
  aclnn/convert.cpp
  aclnn/executor.cpp
  aclnn/nsa_selected_attention.cpp
)

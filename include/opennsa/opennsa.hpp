// OpenNSA native C++ API: every operator of the Native Sparse Attention family that OpenNSA
// implements, on host memory. One header per operator; this one includes them all.
#pragma once

#include "opennsa/core.hpp"
#include "opennsa/select_attention.hpp"
#include "opennsa/compress.hpp"
#include "opennsa/compress_attention.hpp"
#include "opennsa/compress_attention_infer.hpp"
#include "opennsa/select_attention_infer.hpp"
#include "opennsa/compress_with_cache.hpp"

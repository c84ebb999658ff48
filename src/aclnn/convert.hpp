// C arguments -> native API arguments. Only conversion and the checks the native layer cannot do
// (dtype mapping, storage bounds, layout string); every operator rule stays in src/nsa/problem.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "aclnn/acl_meta.h"
#include "opennsa/opennsa.hpp"

namespace opennsa::capi {

// The view of t, named `name` in messages. A null t gives an empty view, which the native
// validation reports as missing when the tensor is required.
TensorView to_view(const aclTensor* t, const char* name);

std::optional<std::vector<std::int64_t>> to_seqlens(const aclIntArray* a);

// inputLayout must be "TND".
void check_layout(const char* inputLayout);

// The selected attention's Params from its C arguments (both directions).
Params to_select_params(double scaleValue, std::int64_t headNum, std::int64_t sparseMode,
                        std::int64_t selectedBlockSize, std::int64_t selectedBlockCount,
                        const aclIntArray* actualSeqQLenOptional, const aclIntArray* actualSeqKvLenOptional);

}  // namespace opennsa::capi

// PyTorch operators of the layer's gated sum: opennsa::gated_sum (forward) and
// opennsa::gated_sum_backward, CPU kernels. The layer mixes its branch outputs per token and
// query head, out[t, h, :] = sum_i gates[t, h, column_i] * outputs_i[t, h, :]. As torch ops (a
// broadcast multiply and an add per branch; backward a multiply, a reduction and a slice-scatter
// each) the mix makes about 17 full-size temporaries per step and rounds every product and
// partial sum in 16-bit dtypes. Here it is one pass each way and one tensor per result: the mix
// alone takes half the time (64/4 heads, T = 4096, bf16: 84-93 ms against 167-186 forward +
// backward; in the whole layer the gain is within the noise of the machine it was measured on,
// docs/PERFORMANCE.md). Every sum runs in the accumulation type (fp32, fp64 for fp64) in a fixed
// order (branch order; ascending d in 8 interleaved partial sums) and is rounded once, so results
// are bitwise identical for every thread count. Fake kernels and autograd: opennsa/_gated_sum.py.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.hpp"

using namespace opennsa_torch;

namespace {

// Loads as the accumulation type and rounds back (to nearest even), per storage type. bf16 by bit
// operations without branches, which the compiler vectorises; c10::BFloat16's own conversions
// did not vectorise here and made the bf16 mix 1.4x slower than the fp32 one with half the bytes.
template <class T>
struct Convert {
    using acc_t = at::opmath_type<T>;
    static acc_t load(T x) { return static_cast<acc_t>(x); }
    static T store(acc_t x) { return static_cast<T>(x); }
};
template <>
struct Convert<c10::BFloat16> {
    using acc_t = float;
    static float load(c10::BFloat16 x) {
        const std::uint32_t bits = static_cast<std::uint32_t>(x.x) << 16;
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    }
    static c10::BFloat16 store(float f) {
        std::uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
        const std::uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
        return c10::BFloat16(static_cast<std::uint16_t>(nan ? (bits >> 16) | 0x40u : rounded),
                             c10::BFloat16::from_bits());
    }
};

// sum_d a[d] b[d] in kLanes interleaved partial sums, added up in a fixed order at the end: the
// same bits for every thread count, and a loop the compiler vectorises (one chain was bound by
// the add latency: 3x the time of the whole backward's memory traffic).
template <class Cv, class T>
typename Cv::acc_t dot(const T* a, const T* b, int64_t n) {
    constexpr int kLanes = 8;
    using acc_t = typename Cv::acc_t;
    acc_t part[kLanes] = {};
    int64_t d = 0;
    for (; d + kLanes <= n; d += kLanes)
        for (int j = 0; j < kLanes; ++j) part[j] += Cv::load(a[d + j]) * Cv::load(b[d + j]);
    for (int j = 0; d < n; ++d, ++j) part[j] += Cv::load(a[d]) * Cv::load(b[d]);
    acc_t sum = 0;
    for (int j = 0; j < kLanes; ++j) sum += part[j];
    return sum;
}

// Rows of [T, N] per parallel task: about 64 KiB of one output per task.
int64_t row_grain(int64_t D) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, D)); }

struct Mix {
    at::Tensor gates;                  // [T, N, C], contiguous
    std::vector<at::Tensor> outputs;   // [T, N, D] each, contiguous
    std::vector<int64_t> columns;      // the gate column of each output
    int64_t rows = 0, C = 0, D = 0;
};

Mix check_mix(const at::Tensor& gates, at::TensorList outputs, at::IntArrayRef columns, const char* fn) {
    require_rank(gates, 3, "gates", "[T, N, branches]");
    TORCH_CHECK_VALUE(!outputs.empty(), "opennsa: ", fn, ": outputs is empty; expected at least one branch output");
    TORCH_CHECK_VALUE(columns.size() == outputs.size(), "opennsa: ", fn, ": columns has ", columns.size(),
                      " entries but outputs has ", outputs.size());
    TORCH_CHECK_VALUE(at::isFloatingType(gates.scalar_type()), "opennsa: ", fn, ": gates has dtype ",
                      gates.scalar_type(), "; expected a floating dtype");
    Mix m;
    m.C = gates.size(2);
    m.D = outputs[0].dim() == 3 ? outputs[0].size(2) : 0;
    m.rows = gates.size(0) * gates.size(1);
    for (size_t i = 0; i < outputs.size(); ++i) {
        const at::Tensor& o = outputs[i];
        TORCH_CHECK_VALUE(o.dim() == 3 && o.size(0) == gates.size(0) && o.size(1) == gates.size(1) && o.size(2) == m.D,
                          "opennsa: ", fn, ": outputs[", i, "] has shape ", o.sizes(), "; expected [",
                          gates.size(0), ", ", gates.size(1), ", ", m.D, "] (the gates' T and N, outputs[0]'s D)");
        TORCH_CHECK_VALUE(o.scalar_type() == gates.scalar_type(), "opennsa: ", fn, ": outputs[", i, "] has dtype ",
                          o.scalar_type(), " but gates has ", gates.scalar_type());
        TORCH_CHECK_VALUE(columns[i] >= 0 && columns[i] < m.C, "opennsa: ", fn, ": columns[", i, "] = ", columns[i],
                          " is outside the ", m.C, " gate columns");
        for (size_t j = 0; j < i; ++j)
            TORCH_CHECK_VALUE(columns[j] != columns[i], "opennsa: ", fn, ": column ", columns[i],
                              " is given twice (columns[", j, "] and columns[", i, "])");
        m.outputs.push_back(o.contiguous());
        m.columns.push_back(columns[i]);
    }
    m.gates = gates.contiguous();
    return m;
}

at::Tensor gated_sum_cpu(const at::Tensor& gates, at::TensorList outputs, at::IntArrayRef columns) {
    const Mix m = check_mix(gates, outputs, columns, "gated_sum");
    at::Tensor result = at::empty(m.outputs[0].sizes(), m.outputs[0].options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, gates.scalar_type(), "opennsa_gated_sum", [&] {
        using Cv = Convert<scalar_t>;
        using acc_t = typename Cv::acc_t;
        const scalar_t* g = m.gates.data_ptr<scalar_t>();
        std::vector<const scalar_t*> o;
        for (const at::Tensor& t : m.outputs) o.push_back(t.data_ptr<scalar_t>());
        scalar_t* out = result.data_ptr<scalar_t>();
        const int64_t D = m.D, C = m.C;
        at::parallel_for(0, m.rows, row_grain(D), [&](int64_t begin, int64_t end) {
            std::vector<acc_t> acc(static_cast<size_t>(D));
            for (int64_t r = begin; r < end; ++r) {
                std::fill(acc.begin(), acc.end(), acc_t(0));
                for (size_t i = 0; i < o.size(); ++i) {
                    const acc_t w = Cv::load(g[r * C + m.columns[i]]);
                    const scalar_t* row = o[i] + r * D;
                    for (int64_t d = 0; d < D; ++d) acc[d] += w * Cv::load(row[d]);
                }
                for (int64_t d = 0; d < D; ++d) out[r * D + d] = Cv::store(acc[d]);
            }
        });
    });
    return result;
}

// d outputs_i = gates[..., column_i] * grad; d gates[..., column_i] = sum_d grad * outputs_i,
// and 0 in the columns no output uses.
std::tuple<at::Tensor, std::vector<at::Tensor>> gated_sum_backward_cpu(const at::Tensor& grad, const at::Tensor& gates,
                                                                       at::TensorList outputs,
                                                                       at::IntArrayRef columns) {
    const Mix m = check_mix(gates, outputs, columns, "gated_sum_backward");
    TORCH_CHECK_VALUE(grad.sizes() == m.outputs[0].sizes() && grad.scalar_type() == gates.scalar_type(),
                      "opennsa: gated_sum_backward: grad has shape ", grad.sizes(), " and dtype ", grad.scalar_type(),
                      "; expected the outputs' ", m.outputs[0].sizes(), " and ", gates.scalar_type());
    const at::Tensor dy = grad.contiguous();
    at::Tensor grad_gates = at::empty(m.gates.sizes(), m.gates.options());
    std::vector<at::Tensor> grad_outputs;
    for (const at::Tensor& t : m.outputs) grad_outputs.push_back(at::empty(t.sizes(), t.options()));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, gates.scalar_type(), "opennsa_gated_sum_backward", [&] {
        using Cv = Convert<scalar_t>;
        using acc_t = typename Cv::acc_t;
        const scalar_t* g = m.gates.data_ptr<scalar_t>();
        const scalar_t* dyp = dy.data_ptr<scalar_t>();
        scalar_t* dg = grad_gates.data_ptr<scalar_t>();
        std::vector<const scalar_t*> o;
        std::vector<scalar_t*> dout;
        for (size_t i = 0; i < m.outputs.size(); ++i) {
            o.push_back(m.outputs[i].data_ptr<scalar_t>());
            dout.push_back(grad_outputs[i].data_ptr<scalar_t>());
        }
        const int64_t D = m.D, C = m.C;
        at::parallel_for(0, m.rows, row_grain(D), [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                const scalar_t* dyr = dyp + r * D;
                for (int64_t c = 0; c < C; ++c) dg[r * C + c] = scalar_t(0);
                for (size_t i = 0; i < o.size(); ++i) {
                    const acc_t w = Cv::load(g[r * C + m.columns[i]]);
                    const scalar_t* row = o[i] + r * D;
                    scalar_t* drow = dout[i] + r * D;
                    for (int64_t d = 0; d < D; ++d) drow[d] = Cv::store(w * Cv::load(dyr[d]));
                    dg[r * C + m.columns[i]] = Cv::store(dot<Cv>(dyr, row, D));
                }
            }
        });
    });
    return {grad_gates, grad_outputs};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opennsa, m) {
    m.def("gated_sum(Tensor gates, Tensor[] outputs, int[] columns) -> Tensor");
    m.def("gated_sum_backward(Tensor grad, Tensor gates, Tensor[] outputs, int[] columns) -> (Tensor, Tensor[])");
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) {
    m.impl("gated_sum", &gated_sum_cpu);
    m.impl("gated_sum_backward", &gated_sum_backward_cpu);
}

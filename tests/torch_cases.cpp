// The PyTorch reference cases (tests/data/torch-cases/README.md) run against the engine.
//
//   torch_cases DIR [KIND...]
//
// Runs every case in DIR (a subfolder holding a case.json) whose kind is one of
// KIND, or of every kind this program knows when none is given. Prints one line
// per failing case and ends with "N passed, M failed"; exits non-zero when a case
// fails, a KIND is unknown, DIR is missing, or DIR holds no case to run.
//
// A kind is one entry of kind_runners(): a function that computes a loaded case
// with the engine and returns what differs from PyTorch's arrays. Shapes always
// come from the .npy files: another draw of the generator has other shapes.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xoperation.hpp>
#include <xtensor/xnpy.hpp>

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Array = ad::Array<double>;
using Var = ad::Var<double>;

/// One entry per array that disagrees with PyTorch; empty when the case passes.
using Differences = std::vector<std::string>;

// --- Tables and their error messages ---------------------------------------------

template <class Strings>
std::string join(const Strings& strings, const char* separator) {
    std::string joined;
    for (const std::string& s : strings) joined += (joined.empty() ? "" : separator) + s;
    return joined;
}

template <class Table>
std::string keys_of(const Table& table) {
    std::vector<std::string> keys;
    for (const auto& entry : table) keys.push_back(entry.first);
    return join(keys, ", ");
}

/// The entry `name` of `table`; an unknown name is an error that lists the known ones.
template <class Table>
const typename Table::mapped_type& lookup(const Table& table, const std::string& name, const char* what) {
    auto it = table.find(name);
    if (it == table.end()) {
        throw std::invalid_argument(fmt::format("unknown {} '{}' (known: {})", what, name, keys_of(table)));
    }
    return it->second;
}

// --- Comparing with the reference ------------------------------------------------

/// The README promises agreement to about 1e-10 in float64. The error of an element
/// is |got - want| / max(1, |want|): relative where values are large, absolute near
/// zero (where PyTorch's rounding noise would make a purely relative measure explode).
/// Every array of every case is held to the same bound.
constexpr double tolerance = 1e-10;

/// |got - want|, infinite when either is NaN: a NaN must fail, and NaN compares false with everything.
double abs_error(double got, double want) {
    double error = std::abs(got - want);
    return std::isnan(error) ? std::numeric_limits<double>::infinity() : error;
}

double element_error(double got, double want) { return abs_error(got, want) / std::max(1.0, std::abs(want)); }

/// The generator saves a 0-d tensor (a loss, a full reduction) with shape (1,),
/// so a one-element array of rank 0 or 1 stands for either. Any other difference
/// in shape is a failure.
bool is_scalar_like(const Array& a) { return a.dimension() <= 1 && a.size() == 1; }

bool same_shape(const Array& got, const Array& want) {
    return ad::equal_shapes(got, want) || (is_scalar_like(got) && is_scalar_like(want));
}

/// "(2, 1)": the position of flat (row-major) element `flat` in `shape`.
std::string index_string(std::size_t flat, const ad::Shape& shape) {
    ad::Shape index(shape.size());
    for (std::size_t axis = shape.size(); axis-- > 0;) {
        index[axis] = flat % shape[axis];
        flat /= shape[axis];
    }
    return ad::shape_string(index);
}

/// Appends to `out` how `got` differs from the reference `want`, if it does.
void compare(Differences& out, const std::string& name, const Array& got, const Array& want) {
    if (!same_shape(got, want)) {
        out.push_back(fmt::format("{}: shape {}, reference {}", name, ad::shape_string_of(got),
                                  ad::shape_string_of(want)));
        return;
    }
    // Engine values and loaded arrays are both row-major xarrays: flat indices match.
    double max_abs = 0;
    double max_error = 0;
    std::size_t worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        double error = element_error(got.data()[i], want.data()[i]);
        max_abs = std::max(max_abs, abs_error(got.data()[i], want.data()[i]));
        if (error > max_error || i == 0) {
            max_error = error;
            worst = i;
        }
    }
    if (max_error <= tolerance) return;
    out.push_back(fmt::format("{}: max abs err {:.3g}, max rel err {:.3g} > {:g} at {}: got {:.17g}, want {:.17g}",
                              name, max_abs, max_error, tolerance, index_string(worst, ad::shape_of(want)),
                              got.data()[worst], want.data()[worst]));
}

// --- A case on disk ---------------------------------------------------------------

/// xt::load_npy with the file named in its errors. xtensor does not check that the
/// data was all there, so a truncated file is caught here instead of read as garbage.
Array load_npy(const fs::path& file) {
    std::ifstream stream(file, std::ios::binary);
    if (!stream) throw ad::io_error(fmt::format("{}: cannot open", file.filename().string()));
    Array array;
    try {
        array = xt::load_npy<double>(stream);
    } catch (const std::exception& e) {
        throw ad::io_error(fmt::format("{}: {}", file.filename().string(), e.what()));
    }
    if (!stream) {
        throw ad::io_error(fmt::format("{}: truncated, holds fewer values than its shape {} needs",
                                       file.filename().string(), ad::shape_string_of(array)));
    }
    return array;
}

json load_case_json(const fs::path& file) {
    std::ifstream stream(file);
    if (!stream) throw ad::io_error("case.json: cannot open");
    try {
        return json::parse(stream);
    } catch (const json::exception& e) {
        throw ad::io_error(fmt::format("case.json: {}", e.what()));
    }
}

/// A case folder with its parsed case.json; arrays are read when asked for.
class Case {
public:
    Case(fs::path dir, json spec) : dir_(std::move(dir)), spec_(std::move(spec)) {}

    const json& spec() const { return spec_; }
    Array array(const std::string& name) const { return load_npy(dir_ / (name + ".npy")); }

private:
    fs::path dir_;
    json spec_;
};

// --- kind "op": one engine op, its value and its VJP --------------------------------

/// What an op of the table gets: its inputs, its integer inputs (case.json's
/// int_inputs: i0, i1, ... as saved, float64 holding whole numbers), case.json's
/// params, and the shape of the reference result (which tells whether the
/// generator kept reduced axes).
struct OpCall {
    std::vector<Var> inputs;
    std::vector<Array> ints;
    const json& params;
    ad::Shape reference_shape;
};

/// An integer input as the engine's ops take indices, classes and tokens.
ad::IndexArray as_indices(const Array& saved) {
    ad::IndexArray indices = xt::cast<std::int64_t>(saved);
    for (std::size_t i = 0; i < saved.size(); ++i) {
        if (double(indices.data()[i]) != saved.data()[i]) {
            throw std::invalid_argument(fmt::format("integer input holds {}", saved.data()[i]));
        }
    }
    return indices;
}

/// A 1-D integer input as a vector of non-negative indices.
[[maybe_unused]] std::vector<std::size_t> as_index_vector(const Array& saved) {
    std::vector<std::size_t> indices;
    for (std::int64_t i : as_indices(saved)) indices.push_back(static_cast<std::size_t>(i));
    return indices;
}

/// A 0/1 input as a mask: true where nonzero (torch.where(i0 != 0, ...)).
ad::Mask as_mask(const Array& saved) { return xt::not_equal(saved, 0.0); }

struct OpSpec {
    std::size_t arity;
    std::vector<std::string> params;  // the keys of case.json's params the op understands
    std::function<Var(const OpCall&)> compute;
};

OpSpec unary(Var (*f)(const Var&)) {
    return {1, {}, [f](const OpCall& call) { return f(call.inputs[0]); }};
}

OpSpec binary(Var (*f)(const Var&, const Var&)) {
    return {2, {}, [f](const OpCall& call) { return f(call.inputs[0], call.inputs[1]); }};
}

/// params.axis: null (or absent) reduces over all axes.
std::optional<long> axis_param(const json& params) {
    if (!params.contains("axis") || params.at("axis").is_null()) return std::nullopt;
    return params.at("axis").get<long>();
}

/// The generator's keepdims, read from the reference result: a kept axis leaves the rank unchanged.
bool keeps_dims(const OpCall& call) { return call.reference_shape.size() == call.inputs[0].dim(); }

OpSpec reduction(Var (*over_all)(const Var&), Var (*along)(const Var&, long, bool)) {
    return {1, {"axis"}, [over_all, along](const OpCall& call) {
                std::optional<long> axis = axis_param(call.params);
                return axis ? along(call.inputs[0], *axis, keeps_dims(call)) : over_all(call.inputs[0]);
            }};
}

OpSpec along_axis(Var (*f)(const Var&, long)) {
    return {1, {"axis"}, [f](const OpCall& call) { return f(call.inputs[0], call.params.at("axis").get<long>()); }};
}

/// params.reduction: "mean" (the default) or "sum".
ad::Reduction reduction_param(const json& params) {
    const std::string reduction = params.value("reduction", "mean");
    if (reduction != "mean" && reduction != "sum") throw std::invalid_argument("reduction '" + reduction + "'");
    return reduction == "sum" ? ad::Reduction::sum : ad::Reduction::mean;
}

OpSpec reshape_op() {
    return {1, {"shape"}, [](const OpCall& call) {
                return ad::reshape(call.inputs[0], call.params.at("shape").get<std::vector<long>>());
            }};
}

/// case.json's op names (PyTorch's) to engine ops.
const std::map<std::string, OpSpec>& op_table() {
    static const std::map<std::string, OpSpec> table = {
        {"add", binary(ad::add<double>)},
        {"sub", binary(ad::sub<double>)},
        {"mul", binary(ad::mul<double>)},
        {"div", binary(ad::div<double>)},
        {"pow", binary(ad::pow<double>)},
        {"matmul", binary(ad::matmul<double>)},  // 2-D x 2-D and matrix x vector
        {"neg", unary(ad::neg<double>)},
        {"exp", unary(ad::exp<double>)},
        {"log", unary(ad::log<double>)},
        {"sqrt", unary(ad::sqrt<double>)},
        {"square", unary(ad::square<double>)},
        {"abs", unary(ad::abs<double>)},
        {"sigmoid", unary(ad::sigmoid<double>)},
        {"tanh", unary(ad::tanh<double>)},
        {"relu", unary(ad::relu<double>)},
        {"softplus", unary(ad::softplus<double>)},
        {"transpose", {1, {"perm"}, [](const OpCall& call) {  // x.permute(*perm); no perm: all axes reversed
             if (!call.params.contains("perm")) return ad::transpose(call.inputs[0]);
             return ad::permute(call.inputs[0], call.params.at("perm").get<std::vector<long>>());
         }}},
        {"sum", reduction(ad::sum<double>, ad::sum<double>)},
        {"mean", reduction(ad::mean<double>, ad::mean<double>)},
        {"max", reduction(ad::max<double>, ad::max<double>)},
        {"softmax", along_axis(ad::softmax<double>)},
        {"log_softmax", along_axis(ad::log_softmax<double>)},
        {"reshape", reshape_op()},

        // elementwise math and masks
        //
        {"sin", unary(ad::sin<double>)},
        {"cos", unary(ad::cos<double>)},
        {"tan", unary(ad::tan<double>)},
        {"asin", unary(ad::asin<double>)},
        {"acos", unary(ad::acos<double>)},
        {"atan", unary(ad::atan<double>)},
        {"sinh", unary(ad::sinh<double>)},
        {"cosh", unary(ad::cosh<double>)},
        {"log1p", unary(ad::log1p<double>)},
        {"expm1", unary(ad::expm1<double>)},
        {"erf", unary(ad::erf<double>)},
        {"reciprocal", unary(ad::reciprocal<double>)},
        {"rsqrt", unary(ad::rsqrt<double>)},
        {"maximum", binary(ad::maximum<double>)},
        {"minimum", binary(ad::minimum<double>)},
        {"where", {2, {}, [](const OpCall& call) {  // torch.where(i0 != 0, x0, x1)
             return ad::where(as_mask(call.ints.at(0)), call.inputs[0], call.inputs[1]);
         }}},

        // activations
        //
        {"leaky_relu", {1, {"negative_slope"}, [](const OpCall& call) {
             return ad::leaky_relu(call.inputs[0], call.params.at("negative_slope").get<double>());
         }}},
        {"elu", {1, {"alpha"}, [](const OpCall& call) { return ad::elu(call.inputs[0], call.params.at("alpha").get<double>()); }}},
        {"gelu", {1, {"approximate"}, [](const OpCall& call) {
             const std::string approximate = call.params.value("approximate", "none");
             if (approximate != "none" && approximate != "tanh") {
                 throw std::invalid_argument("gelu: approximate '" + approximate + "'");
             }
             return ad::gelu(call.inputs[0], approximate == "tanh" ? ad::GeluApproximation::tanh : ad::GeluApproximation::none);
         }}},
        {"hardtanh", {1, {"min_val", "max_val"}, [](const OpCall& call) {
             return ad::hardtanh(call.inputs[0], call.params.value("min_val", -1.0), call.params.value("max_val", 1.0));
         }}},
        {"silu", unary(ad::silu<double>)},
        {"softsign", unary(ad::softsign<double>)},
        {"log_sigmoid", unary(ad::log_sigmoid<double>)},
        {"mish", unary(ad::mish<double>)},

        // reductions
        //
        {"min", reduction(ad::min<double>, ad::min<double>)},
        {"prod", reduction(ad::prod<double>, ad::prod<double>)},
        {"logsumexp", {1, {"axis", "keepdims"}, [](const OpCall& call) {
             std::optional<long> axis = axis_param(call.params);
             return axis ? ad::logsumexp(call.inputs[0], *axis, call.params.value("keepdims", false))
                         : ad::logsumexp(call.inputs[0]);
         }}},
        {"var", {1, {"axis", "correction"}, [](const OpCall& call) {
             std::optional<long> axis = axis_param(call.params);
             std::size_t correction = call.params.value("correction", std::size_t(1));
             return ad::var(call.inputs[0], axis, correction, axis && keeps_dims(call));
         }}},
        {"std", {1, {"axis", "correction"}, [](const OpCall& call) {
             std::optional<long> axis = axis_param(call.params);
             std::size_t correction = call.params.value("correction", std::size_t(1));
             return ad::std(call.inputs[0], axis, correction, axis && keeps_dims(call));
         }}},
        {"norm", {1, {"axis", "ord"}, [](const OpCall& call) {
             std::optional<long> axis = axis_param(call.params);
             double ord = call.params.value("ord", 2.0);
             return axis ? ad::norm(call.inputs[0], ord, *axis, keeps_dims(call)) : ad::norm(call.inputs[0], ord);
         }}},
        {"cumsum", along_axis(ad::cumsum<double>)},

        // shape and indexing
        //
        {"gather", {1, {"axis"}, [](const OpCall& call) {
             return ad::gather(call.inputs[0], call.params.at("axis").get<long>(), as_indices(call.ints.at(0)));
         }}},
        {"index_select", {1, {"axis"}, [](const OpCall& call) {
             return ad::index_select(call.inputs[0], call.params.at("axis").get<long>(), as_indices(call.ints.at(0)));
         }}},
        {"embedding", {1, {}, [](const OpCall& call) { return ad::embedding(call.inputs[0], as_indices(call.ints.at(0))); }}},
        {"flip", {1, {"axes"}, [](const OpCall& call) {
             return ad::flip(call.inputs[0], call.params.at("axes").get<std::vector<long>>());
         }}},
        {"repeat", {1, {"repeats"}, [](const OpCall& call) {
             return ad::repeat(call.inputs[0], call.params.at("repeats").get<std::vector<std::size_t>>());
         }}},
        {"unsqueeze", {1, {"axis"}, [](const OpCall& call) {
             return ad::unsqueeze(call.inputs[0], call.params.at("axis").get<long>());
         }}},
        {"squeeze", {1, {"axis"}, [](const OpCall& call) {
             std::optional<long> axis = axis_param(call.params);
             return axis ? ad::squeeze(call.inputs[0], *axis) : ad::squeeze(call.inputs[0]);
         }}},

        // matmul, outer, dot, trace
        //
        {"outer", binary(ad::outer<double>)},
        {"dot", binary(ad::dot<double>)},
        {"trace", unary(ad::trace<double>)},

        // decompositions
        //
        {"solve", binary(ad::solve<double>)},
        {"solve_triangular", {2, {"upper"}, [](const OpCall& call) {
             return ad::solve_triangular(call.inputs[0], call.inputs[1], call.params.value("upper", false));
         }}},
        {"cholesky", {1, {}, [](const OpCall& call) {  // of (x0 + x0^T) / 2, as the generator factors it
             const Var& a = call.inputs[0];
             return ad::cholesky((a + ad::transpose(a)) * 0.5);
         }}},
        {"inv", unary(ad::inv<double>)},
        {"det", unary(ad::det<double>)},
        {"logabsdet", unary(ad::logabsdet<double>)},

        // convolution and pooling
        //
        {"conv1d", {3, {"stride", "padding", "dilation", "groups"}, [](const OpCall& call) {
             const json& p = call.params;
             return ad::conv1d(call.inputs[0], call.inputs[1], call.inputs[2], p.at("stride").get<long>(),
                               p.at("padding").get<long>(), p.at("dilation").get<long>(), p.at("groups").get<long>());
         }}},
        {"conv2d", {3, {"stride", "padding", "dilation", "groups"}, [](const OpCall& call) {
             const auto size2 = [](const json& j) {  // an int or a pair
                 return j.is_array() ? ad::Size2(j.at(0).get<long>(), j.at(1).get<long>()) : ad::Size2(j.get<long>());
             };
             const json& p = call.params;
             return ad::conv2d(call.inputs[0], call.inputs[1], call.inputs[2], size2(p.at("stride")),
                               size2(p.at("padding")), size2(p.at("dilation")), p.at("groups").get<long>());
         }}},
        {"max_pool2d", {1, {"kernel", "stride", "padding"}, [](const OpCall& call) {
             const auto size2 = [](const json& j) {
                 return j.is_array() ? ad::Size2(j.at(0).get<long>(), j.at(1).get<long>()) : ad::Size2(j.get<long>());
             };
             const json& p = call.params;
             ad::PoolStride stride;
             if (p.contains("stride") && !p.at("stride").is_null()) stride = size2(p.at("stride"));
             return ad::max_pool2d(call.inputs[0], size2(p.at("kernel")), stride, size2(p.value("padding", json(0))));
         }}},
        {"avg_pool2d", {1, {"kernel", "stride", "padding", "count_include_pad"}, [](const OpCall& call) {
             const auto size2 = [](const json& j) {
                 return j.is_array() ? ad::Size2(j.at(0).get<long>(), j.at(1).get<long>()) : ad::Size2(j.get<long>());
             };
             const json& p = call.params;
             ad::PoolStride stride;
             if (p.contains("stride") && !p.at("stride").is_null()) stride = size2(p.at("stride"));
             return ad::avg_pool2d(call.inputs[0], size2(p.at("kernel")), stride, size2(p.value("padding", json(0))),
                                   p.value("count_include_pad", true));
         }}},

        // normalization, dropout and losses
        //
        {"layer_norm", {3, {"normalized_shape", "eps"}, [](const OpCall& call) {
             return ad::layer_norm(call.inputs[0], call.params.at("normalized_shape").get<ad::Shape>(), call.inputs[1],
                                   call.inputs[2], call.params.value("eps", 1e-5));
         }}},
        {"batch_norm", {3, {"eps", "training"}, [](const OpCall& call) {
             if (!call.params.value("training", true)) throw std::invalid_argument("batch_norm: eval cases need running statistics");
             return ad::batch_norm<double>(call.inputs[0], call.inputs[1], call.inputs[2], nullptr, true, 0.1,
                                           call.params.value("eps", 1e-5));
         }}},

        // losses
        {"huber_loss", {2, {"delta", "reduction"}, [](const OpCall& call) {
             return ad::huber_loss(call.inputs[0], call.inputs[1], call.params.value("delta", 1.0),
                                   reduction_param(call.params));
         }}},
        {"l1_loss", {2, {"reduction"}, [](const OpCall& call) {
             return ad::l1_loss(call.inputs[0], call.inputs[1], reduction_param(call.params));
         }}},
    };
    return table;
}

/// A param the op would ignore means the case asks for something this runner does not do
/// ("note" is the generator's comment to the reader).
void check_params(const std::string& name, const OpSpec& op, const json& params) {
    for (const auto& item : params.items()) {
        if (item.key() == "note") continue;
        if (std::find(op.params.begin(), op.params.end(), item.key()) == op.params.end()) {
            throw std::invalid_argument(fmt::format("op {}: unknown param '{}'", name, item.key()));
        }
    }
}

void check_arity(const std::string& name, const OpSpec& op, const json& spec) {
    if (spec.contains("arity") && spec.at("arity").get<std::size_t>() != op.arity) {
        throw std::invalid_argument(fmt::format("op {}: case.json says arity {}, the op takes {}", name,
                                                spec.at("arity").get<std::size_t>(), op.arity));
    }
}

/// The cotangent v as a seed of y's shape: only a 0-d y saved as (1,) needs reshaping.
Array seed_for(const Var& y, Array v) {
    if (is_scalar_like(v) && is_scalar_like(y.value())) v.reshape(y.shape());
    return v;
}

Differences run_op_case(const Case& c) {
    const std::string name = c.spec().at("op").get<std::string>();
    const OpSpec& op = lookup(op_table(), name, "op");
    const json params = c.spec().value("params", json::object());
    check_arity(name, op, c.spec());
    check_params(name, op, params);

    ad::Tape tape;
    std::vector<Var> inputs;
    for (std::size_t i = 0; i < op.arity; ++i) inputs.push_back(ad::param(c.array(fmt::format("x{}", i))));
    std::vector<Array> ints;
    for (const auto& name : c.spec().value("int_inputs", json::array())) ints.push_back(c.array(name.get<std::string>()));
    const Array y_reference = c.array("y");
    Var y = op.compute(OpCall{inputs, ints, params, ad::shape_of(y_reference)});

    Differences differences;
    compare(differences, "y", y.value(), y_reference);
    if (!same_shape(y.value(), y_reference)) return differences;  // v has y's shape: no VJP to compare

    y.backward(seed_for(y, c.array("v")));
    for (std::size_t i = 0; i < op.arity; ++i) {
        std::string g = fmt::format("g{}", i);
        compare(differences, g, inputs[i].grad(), c.array(g));
    }
    return differences;
}

// --- kind "mlp": a network of raw engine ops and its loss gradient --------------------

using Activation = Var (*)(const Var&);
using Loss = Var (*)(const Var& output, const Var& target);

Var identity(const Var& x) { return x; }

Activation activation_named(const std::string& name) {
    static const std::map<std::string, Activation> table = {
        {"identity", identity},
        {"relu", ad::relu<double>},
        {"sigmoid", ad::sigmoid<double>},
        {"tanh", ad::tanh<double>},
    };
    return lookup(table, name, "activation");
}

/// The README's losses; "mean" divides by the batch size (rows), as PyTorch's reference does.
Loss loss_named(const std::string& name) {
    static const std::map<std::string, Loss> table = {
        {"half_sse", [](const Var& out, const Var& y) { return ad::half_sse(out, y, ad::Reduction::sum); }},
        {"half_sse_mean", [](const Var& out, const Var& y) { return ad::half_sse(out, y, ad::Reduction::mean); }},
        {"softmax_ce_mean",
         [](const Var& out, const Var& y) { return ad::softmax_cross_entropy(out, y, ad::Reduction::mean); }},
    };
    return lookup(table, name, "loss");
}

/// Layer l (from 1) computes activation(A W^T + b); W is (out, in).
struct Layer {
    Var weight;
    Var bias;
    Activation activation;
};

std::vector<Activation> activations_of(const Case& c) {
    std::vector<Activation> activations;
    for (const auto& activation : c.spec().at("activations")) {
        activations.push_back(activation_named(activation.get<std::string>()));
    }
    return activations;
}

/// "W1", "b1", "W2", "b2", ...: the parameters of `layers` layers, in that order.
std::vector<std::string> parameter_names(std::size_t layers) {
    std::vector<std::string> names;
    for (std::size_t l = 1; l <= layers; ++l) {
        names.push_back(fmt::format("W{}", l));
        names.push_back(fmt::format("b{}", l));
    }
    return names;
}

std::vector<Array> parameter_arrays(const Case& c, std::size_t layers) {
    std::vector<Array> arrays;
    for (const std::string& name : parameter_names(layers)) arrays.push_back(c.array(name));
    return arrays;
}

/// The layers whose weights and biases are `parameters`, ordered as parameter_names.
std::vector<Layer> layers_of(const std::vector<Var>& parameters, const std::vector<Activation>& activations) {
    std::vector<Layer> layers;
    for (std::size_t l = 0; l < activations.size(); ++l) {
        layers.push_back({parameters.at(2 * l), parameters.at(2 * l + 1), activations[l]});
    }
    return layers;
}

/// The case's layers, their weights and biases made leaves by `leaf` (ad::param or ad::constant).
std::vector<Layer> load_layers(const Case& c, Var (*leaf)(Array)) {
    const std::vector<Activation> activations = activations_of(c);
    std::vector<Var> parameters;
    for (Array& array : parameter_arrays(c, activations.size())) parameters.push_back(leaf(std::move(array)));
    return layers_of(parameters, activations);
}

Var forward(Var a, const std::vector<Layer>& layers) {
    for (const Layer& layer : layers) {
        a = layer.activation(ad::matmul(a, layer.weight, false, true) + layer.bias);
    }
    return a;
}

Differences run_mlp_case(const Case& c) {
    const Loss loss_fn = loss_named(c.spec().at("loss").get<std::string>());
    ad::Tape tape;
    const std::vector<Layer> layers = load_layers(c, ad::param<double>);
    Var loss = loss_fn(forward(ad::constant(c.array("X")), layers), ad::constant(c.array("Y")));
    loss.backward();

    Differences differences;
    compare(differences, "loss", loss.value(), c.array("loss"));
    for (std::size_t l = 1; l <= layers.size(); ++l) {
        std::string dw = fmt::format("dW{}", l);
        std::string db = fmt::format("db{}", l);
        compare(differences, dw, layers[l - 1].weight.grad(), c.array(dw));
        compare(differences, db, layers[l - 1].bias.grad(), c.array(db));
    }
    return differences;
}

// --- kinds "hessian", "hvp", "jvp", "jacobian": the transforms of functional.hpp ------
//
// The transforms take arrays and record on a tape of their own: what a function
// closes over (data, fixed weights) is constants, which no tape records.

/// A case.json field naming the kind's function must name the one this runner computes.
void check_function(const Case& c, const std::string& expected) {
    if (c.spec().contains("function") && c.spec().at("function").get<std::string>() != expected) {
        throw std::invalid_argument(fmt::format("function '{}': this runner computes '{}'",
                                                c.spec().at("function").get<std::string>(), expected));
    }
}

/// H column by column, H e_k by ad::hvp: a second path to H (hvp never forms it).
Array hessian_by_hvp(const ad::UnaryFn<double>& f, const Array& x) {
    const std::size_t n = x.size();
    ad::Shape shape = ad::shape_of(x);
    const ad::Shape x_shape = shape;
    shape.insert(shape.end(), x_shape.begin(), x_shape.end());
    Array h = Array::from_shape(shape);
    for (std::size_t k = 0; k < n; ++k) {
        Array e = xt::zeros<double>(x_shape);
        e.data()[k] = 1;
        const Array column = ad::hvp<double>(f, x, e);
        for (std::size_t i = 0; i < n; ++i) h.data()[i * n + k] = column.data()[i];
    }
    return h;
}

Differences run_hessian_case(const Case& c) {
    check_function(c, "f(x) = sum(sigmoid(W x)) + sum(x^3)/3");
    const Var w = ad::constant(c.array("W"));
    auto f = [&w](const Var& x) { return ad::sum(ad::sigmoid(ad::matmul(w, x))) + ad::sum(ad::pow(x, 3.0)) / 3.0; };
    const Array x = c.array("x");
    const Array h_reference = c.array("H");

    Differences differences;
    compare(differences, "f", ad::value_and_grad<double>(f, x).value, c.array("f"));
    compare(differences, "H (hessian)", ad::hessian<double>(f, x), h_reference);
    compare(differences, "H (hvp columns)", hessian_by_hvp(f, x), h_reference);
    return differences;
}

/// HV_p = d/dp <dL/dW1, V1>: H v for v = (V1, 0, 0, ...), V1 in W1's block, over all parameters.
Differences run_hvp_case(const Case& c) {
    const Loss loss_fn = loss_named(c.spec().at("loss").get<std::string>());
    const std::vector<Activation> activations = activations_of(c);
    const Var x = ad::constant(c.array("X"));
    const Var y = ad::constant(c.array("Y"));
    auto loss = [&](const std::vector<Var>& parameters) {
        return loss_fn(forward(x, layers_of(parameters, activations)), y);
    };
    const std::vector<Array> parameters = parameter_arrays(c, activations.size());
    std::vector<Array> vs;
    for (const Array& p : parameters) vs.push_back(xt::zeros<double>(p.shape()));
    vs.at(0) = c.array("V1");
    const std::vector<Array> hv = ad::hvp<double>(loss, parameters, vs);

    Differences differences;
    const std::vector<std::string> names = parameter_names(activations.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
        std::string name = "HV_" + names[i];
        compare(differences, name, hv.at(i), c.array(name));
    }
    return differences;
}

/// out = net(X) and JV = J T, the weights fixed.
Differences run_jvp_case(const Case& c) {
    const std::vector<Layer> layers = load_layers(c, ad::constant<double>);
    auto net = [&layers](const Var& x) { return forward(x, layers); };
    const ad::ValueAndGrad<double> result = ad::jvp<double>(net, c.array("X"), c.array("T"));

    Differences differences;
    compare(differences, "out", result.value, c.array("out"));
    compare(differences, "JV", result.grad, c.array("JV"));
    return differences;
}

/// J = d net(X) / dX, shape out.shape + X.shape, by reverse and by forward mode.
Differences run_jacobian_case(const Case& c) {
    const std::vector<Layer> layers = load_layers(c, ad::constant<double>);
    auto net = [&layers](const Var& x) { return forward(x, layers); };
    const Array x = c.array("X");
    const Array j_reference = c.array("J");

    Differences differences;
    compare(differences, "J (jacrev)", ad::jacrev<double>(net, x), j_reference);
    compare(differences, "J (jacfwd)", ad::jacfwd<double>(net, x), j_reference);
    return differences;
}

// --- kind "cnn": the nn layers of a small CNN ---------------------------------------

/// conv2d(W1, b1, padding 1) -> relu -> max_pool2d(2) -> flatten -> linear(W2, b2) ->
/// softmax cross-entropy against class indices, mean over the batch: built from
/// nn::Conv2d, nn::MaxPool2d, nn::Flatten and nn::Linear holding the case's weights.
Differences run_cnn_case(const Case& c) {
    const Array w1 = c.array("W1");
    const auto& ws = w1.shape();
    ad::Tape tape;
    ad::nn::Conv2d<double> conv(ad::nn::Conv2dOptions(static_cast<long>(ws[1]), static_cast<long>(ws[0]),
                                                      {static_cast<long>(ws[2]), static_cast<long>(ws[3])})
                                    .padding(1));
    ad::nn::assign_parameters<double>(conv, {{"weight", w1}, {"bias", c.array("b1")}});
    ad::nn::MaxPool2d<double> pool(2);
    ad::nn::Flatten<double> flatten;
    ad::nn::Linear<double> linear(c.array("W2"), c.array("b2"));
    const ad::IndexArray labels = as_indices(c.array("labels"));

    Var logits = linear(flatten(pool(ad::relu(conv(c.array("X"))))));
    Var loss = ad::cross_entropy(logits, labels, ad::Reduction::mean);
    loss.backward();

    Differences differences;
    compare(differences, "loss", loss.value(), c.array("loss"));
    compare(differences, "dW1", conv.weight().grad(), c.array("dW1"));
    compare(differences, "db1", conv.bias().grad(), c.array("db1"));
    compare(differences, "dW2", linear.weight().grad(), c.array("dW2"));
    compare(differences, "db2", linear.bias().grad(), c.array("db2"));
    return differences;
}


// --- kinds "gru", "lstm": the nn recurrent cells over a sequence -----------------

/// The case's recurrent layer (nn::GRU or nn::LSTM, one layer) and output nn::Linear run from
/// the zero state over X (T, N, I): out = output W_out^T + b_out over all steps at once, loss
/// 1/2 sum (out - Y)^2; the loss and every d<name> compared.
template <class Recurrent, class Options>
Differences run_recurrent_case(const Case& c) {
    const json& spec = c.spec();
    const long input = spec.at("input").get<long>(), hidden = spec.at("hidden").get<long>();
    ad::Tape tape;
    Recurrent rnn(Options(input, hidden));
    ad::nn::assign_parameters<double>(rnn, {{"weight_ih_l0", c.array("W_ih")},
                                            {"weight_hh_l0", c.array("W_hh")},
                                            {"bias_ih_l0", c.array("b_ih")},
                                            {"bias_hh_l0", c.array("b_hh")}});
    ad::nn::Linear<double> head(c.array("W_out"), c.array("b_out"));
    const Array x = c.array("X");
    const Array y = c.array("Y");
    const long steps = long(x.shape()[0]), batch = long(x.shape()[1]), outputs = long(y.shape()[2]);
    Var h = rnn(ad::constant(x));  // (T, N, H)
    Var out = head(ad::reshape(h, {steps * batch, hidden}));
    Var loss = ad::half_sse(out, ad::constant(Array(xt::reshape_view(y, {steps * batch, outputs}))),
                            ad::Reduction::sum);
    loss.backward();

    Differences differences;
    compare(differences, "loss", loss.value(), c.array("loss"));
    std::map<std::string, Var> parameters;
    for (const auto& p : rnn.named_parameters()) parameters[p.name] = p.var;
    compare(differences, "dW_ih", parameters.at("weight_ih_l0").grad(), c.array("dW_ih"));
    compare(differences, "dW_hh", parameters.at("weight_hh_l0").grad(), c.array("dW_hh"));
    compare(differences, "db_ih", parameters.at("bias_ih_l0").grad(), c.array("db_ih"));
    compare(differences, "db_hh", parameters.at("bias_hh_l0").grad(), c.array("db_hh"));
    compare(differences, "dW_out", head.weight().grad(), c.array("dW_out"));
    compare(differences, "db_out", head.bias().grad(), c.array("db_out"));
    return differences;
}


// --- kind "attention": nn::MultiheadAttention, a residual and nn::LayerNorm ------

/// X (N, T, D) -> Z = layer_norm(X + MultiheadAttention(X, X, X, causal)) with
/// nn::MultiheadAttention (batch_first; in_proj packs Wq, Wk, Wv by rows) and
/// nn::LayerNorm (gamma, beta); loss 1/2 sum (Z - Y)^2.
Differences run_attention_case(const Case& c) {
    const Array x_value = c.array("X");
    const long dim = static_cast<long>(x_value.shape()[2]);
    const long heads = c.spec().at("heads").get<long>();
    ad::Tape tape;
    ad::nn::MultiheadAttention<double> attention(
        ad::nn::MultiheadAttentionOptions(dim, heads).batch_first(true));
    ad::nn::LayerNorm<double> norm(
        ad::nn::LayerNormOptions({std::size_t(dim)}).eps(c.spec().at("eps").get<double>()));
    attention.in_proj_weight().mutable_value() = xt::concatenate(xt::xtuple(c.array("Wq"), c.array("Wk"), c.array("Wv")), 0);
    attention.in_proj_bias().mutable_value() = xt::concatenate(xt::xtuple(c.array("bq"), c.array("bk"), c.array("bv")), 0);
    attention.out_proj().weight().mutable_value() = c.array("Wo");
    attention.out_proj().bias().mutable_value() = c.array("bo");
    norm.weight().mutable_value() = c.array("gamma");
    norm.bias().mutable_value() = c.array("beta");

    Var x = ad::param(x_value);
    ad::nn::AttentionMasks causal;
    causal.is_causal = true;
    Var z = norm(x + attention.forward(x, x, x, causal).output);
    Var loss = ad::scale(ad::sum(ad::square(z - ad::constant(c.array("Y")))), 0.5);
    loss.backward();

    Differences differences;
    compare(differences, "loss", loss.value(), c.array("loss"));
    compare(differences, "dX", x.grad(), c.array("dX"));
    // d in_proj_weight and d in_proj_bias split back into the q, k, v rows.
    const auto d = static_cast<std::size_t>(dim);
    const auto dw = ad::split(ad::constant(attention.in_proj_weight().grad()), d, 0);
    const auto db = ad::split(ad::constant(attention.in_proj_bias().grad()), d, 0);
    const char* names[] = {"q", "k", "v"};
    for (std::size_t i = 0; i < 3; ++i) {
        compare(differences, fmt::format("dW{}", names[i]), dw[i].value(), c.array(fmt::format("dW{}", names[i])));
        compare(differences, fmt::format("db{}", names[i]), db[i].value(), c.array(fmt::format("db{}", names[i])));
    }
    compare(differences, "dWo", attention.out_proj().weight().grad(), c.array("dWo"));
    compare(differences, "dbo", attention.out_proj().bias().grad(), c.array("dbo"));
    compare(differences, "dgamma", norm.weight().grad(), c.array("dgamma"));
    compare(differences, "dbeta", norm.bias().grad(), c.array("dbeta"));
    return differences;
}


// --- Kinds and the run ------------------------------------------------------------

using Runner = Differences (*)(const Case&);

/// One entry per kind of case this program can check.
const std::map<std::string, Runner>& kind_runners() {
    static const std::map<std::string, Runner> runners = {
        {"hessian", run_hessian_case},
        {"hvp", run_hvp_case},
        {"jacobian", run_jacobian_case},
        {"jvp", run_jvp_case},
        {"mlp", run_mlp_case},
        {"op", run_op_case},
        // cnn
        {"cnn", run_cnn_case},

        // gru, lstm
        {"gru", run_recurrent_case<ad::nn::GRU<double>, ad::nn::GRUOptions>},
        {"lstm", run_recurrent_case<ad::nn::LSTM<double>, ad::nn::LSTMOptions>},

        // attention
        {"attention", run_attention_case},

    };
    return runners;
}

class Tally {
public:
    void pass() { ++passed_; }
    void fail(const std::string& name, const std::string& what) {
        std::cout << name << ": " << what << '\n';
        ++failed_;
    }
    void skip(const std::string& kind) { skipped_kinds_.insert(kind); }

    /// Zero: every case run passed, and there was at least one.
    int finish() const {
        if (!skipped_kinds_.empty()) {
            std::cout.flush();  // the note goes to stderr, after the failures and before the summary
            std::cerr << "note: cases of kinds not run: " << join(skipped_kinds_, ", ") << '\n';
        }
        if (passed_ + failed_ == 0) std::cout << "no case to run\n";
        std::cout << passed_ << " passed, " << failed_ << " failed\n";
        return failed_ == 0 && passed_ > 0 ? 0 : 1;
    }

private:
    int passed_ = 0;
    int failed_ = 0;
    std::set<std::string> skipped_kinds_;
};

/// The kinds asked for on the command line (all known ones if none); an unknown
/// kind is reported as a failure, since its cases would otherwise pass unchecked.
std::set<std::string> selected_kinds(int argc, char** argv, Tally& tally) {
    std::set<std::string> kinds;
    if (argc <= 2) {
        for (const auto& entry : kind_runners()) kinds.insert(entry.first);
    }
    for (int i = 2; i < argc; ++i) {
        if (kind_runners().count(argv[i])) {
            kinds.insert(argv[i]);
        } else {
            tally.fail(fmt::format("kind {}", argv[i]),
                       fmt::format("unknown kind (known: {})", keys_of(kind_runners())));
        }
    }
    return kinds;
}

/// Subfolders holding a case.json, by name so the output is stable.
std::vector<fs::path> case_dirs(const fs::path& dir) {
    std::vector<fs::path> dirs;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.is_directory() && fs::exists(entry.path() / "case.json")) dirs.push_back(entry.path());
    }
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

void run_case(const fs::path& dir, const std::set<std::string>& kinds, Tally& tally) {
    const std::string name = dir.filename().string();
    try {
        // An unreadable case.json hides the kind: it fails whatever kinds were asked for.
        json spec = load_case_json(dir / "case.json");
        const std::string kind = spec.at("kind").get<std::string>();
        if (!kinds.count(kind)) {
            tally.skip(kind);
            return;
        }
        Differences differences = kind_runners().at(kind)(Case(dir, std::move(spec)));
        if (differences.empty()) {
            tally.pass();
        } else {
            tally.fail(name, join(differences, "; "));
        }
    } catch (const std::exception& e) {
        tally.fail(name, e.what());
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: torch_cases DIR [KIND...]\n";
        return 2;
    }
    const fs::path dir = argv[1];
    if (!fs::is_directory(dir)) {
        std::cerr << "torch_cases: " << dir.string() << " is not a directory\n";
        return 2;
    }
    Tally tally;
    const std::set<std::string> kinds = selected_kinds(argc, argv, tally);
    for (const fs::path& case_dir : case_dirs(dir)) run_case(case_dir, kinds, tally);
    return tally.finish();
}

#include "autodiff/functional.hpp"

#include <fmt/format.h>
#include <xtensor/xadapt.hpp>

#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

template <class T>
std::vector<Var<T>> params_of(const std::vector<Array<T>>& xs) {
    std::vector<Var<T>> vars;
    vars.reserve(xs.size());
    for (const auto& x : xs) vars.push_back(param(Array<T>(x)));
    return vars;
}

template <class T>
void check_shape(const char* fn, const char* what, const Array<T>& given, const Shape& expected) {
    if (shape_of(given) != expected) {
        throw shape_error(fmt::format("{}: the {} has shape {} but must have shape {}", fn, what,
                                      shape_string_of(given), shape_string(expected)));
    }
}

template <class T>
void check_scalar(const char* fn, const Var<T>& y) {
    if (y.size() != 1) {
        throw shape_error(fmt::format("{}: f must return a scalar, it returned shape {}", fn, shape_string_of(y.value())));
    }
}

/// The gradients of `output` seeded with `seed`, as arrays; zeros when the
/// output does not depend on the inputs at all.
template <class T>
std::vector<Array<T>> vjp_arrays(const Var<T>& output, const std::vector<Var<T>>& inputs, const Var<T>& seed,
                                 BackwardOptions options = {}) {
    std::vector<Array<T>> out;
    if (!output.requires_grad()) {
        for (const auto& x : inputs) out.push_back(xt::zeros<T>(x.value().shape()));
        return out;
    }
    for (auto& g : grad(output, inputs, seed, options)) out.push_back(g.value());
    return out;
}

/// A one-hot value of `shape` with a 1 at flat index k.
template <class T>
Var<T> unit(const Shape& shape, std::size_t k) {
    Array<T> e = xt::zeros<T>(shape);
    e.data()[k] = T(1);
    return constant(std::move(e));
}

/// Lays rows (each a flattened block of `row_shape`) out as out_shape + row_shape.
template <class T>
Array<T> assemble(const std::vector<Array<T>>& rows, const Shape& out_shape, const Shape& row_shape) {
    Shape shape = out_shape;
    shape.insert(shape.end(), row_shape.begin(), row_shape.end());
    Array<T> result = Array<T>::from_shape(shape);
    std::size_t row_size = element_count(row_shape);
    for (std::size_t k = 0; k < rows.size(); ++k) std::copy_n(rows[k].data(), row_size, result.data() + k * row_size);
    return result;
}

/// The Jacobian of `y` with respect to `x`, shape y.shape + x.shape: one
/// backward sweep per element of y, each seeded with a unit cotangent.
template <class T>
Array<T> jacobian_by_rows(const Var<T>& y, const Var<T>& x) {
    Shape out_shape = y.shape();
    std::vector<Array<T>> rows;
    for (std::size_t k = 0; k < y.size(); ++k) {
        rows.push_back(vjp_arrays(y, {x}, unit<T>(out_shape, k), {.retain_graph = true})[0]);
    }
    return assemble(rows, out_shape, x.shape());
}

/// J^T u recorded with a free cotangent u: the linear map the JVP trick differentiates.
template <class T>
struct LinearizedVjp {
    Var<T> u;
    std::vector<Var<T>> g;  // g_i = u^T J_i, recorded as functions of u
};

template <class T>
LinearizedVjp<T> linearized_vjp(const Var<T>& y, const std::vector<Var<T>>& xs) {
    LinearizedVjp<T> result;
    // The value of u is irrelevant (g is linear in it); zeros keep g finite.
    result.u = param(Array<T>(xt::zeros<T>(y.value().shape())));
    if (y.requires_grad()) {
        result.g = grad(y, xs, result.u, {.retain_graph = true, .create_graph = true});
    } else {
        for (const auto& x : xs) result.g.push_back(constant(Array<T>(xt::zeros<T>(x.value().shape()))));
    }
    return result;
}

}  // namespace

template <class T>
ValueAndGrads<T> value_and_grad(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs) {
    Tape tape;
    EnableGrad recording;
    auto vars = params_of(xs);
    Var<T> y = f(vars);
    check_scalar("value_and_grad", y);
    return {y.value(), vjp_arrays(y, vars, constant(Array<T>(xt::ones<T>(y.value().shape()))))};
}

template <class T>
ValueAndGrad<T> value_and_grad(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x) {
    auto r = value_and_grad<T>([&f](const std::vector<Var<T>>& v) { return f(v[0]); }, std::vector<Array<T>>{x});
    return {std::move(r.value), std::move(r.grads[0])};
}

template <class T>
ValueAndGrads<T> vjp(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs, const Array<T>& v) {
    Tape tape;
    EnableGrad recording;
    auto vars = params_of(xs);
    Var<T> y = f(vars);
    check_shape("vjp", "cotangent", v, y.shape());
    return {y.value(), vjp_arrays(y, vars, constant(v))};
}

template <class T>
ValueAndGrad<T> vjp(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x, const Array<T>& v) {
    auto r = vjp<T>([&f](const std::vector<Var<T>>& in) { return f(in[0]); }, std::vector<Array<T>>{x}, v);
    return {std::move(r.value), std::move(r.grads[0])};
}

template <class T>
ValueAndGrad<T> jvp(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs,
                    const std::vector<Array<T>>& ts) {
    if (ts.size() != xs.size()) {
        throw shape_error(fmt::format("jvp: {} tangents for {} inputs", ts.size(), xs.size()));
    }
    for (std::size_t i = 0; i < xs.size(); ++i) check_shape("jvp", "tangent", ts[i], shape_of(xs[i]));
    Tape tape;
    EnableGrad recording;
    auto vars = params_of(xs);
    Var<T> y = f(vars);
    auto lin = linearized_vjp(y, vars);
    // <g(u), t> = u^T J t; its gradient in u is J t.
    Var<T> inner = scalar(T(0));
    for (std::size_t i = 0; i < vars.size(); ++i) inner = inner + sum(lin.g[i] * constant(ts[i]));
    auto jt = vjp_arrays(inner, {lin.u}, constant(Array<T>(T(1))));
    return {y.value(), std::move(jt[0])};
}

template <class T>
ValueAndGrad<T> jvp(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x, const Array<T>& t) {
    return jvp<T>([&f](const std::vector<Var<T>>& in) { return f(in[0]); }, std::vector<Array<T>>{x},
                  std::vector<Array<T>>{t});
}

template <class T>
Array<T> jacrev(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x) {
    Tape tape;
    EnableGrad recording;
    auto vars = params_of(std::vector<Array<T>>{x});
    return jacobian_by_rows(f(vars[0]), vars[0]);
}

template <class T>
Array<T> jacfwd(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x) {
    Tape tape;
    EnableGrad recording;
    auto vars = params_of(std::vector<Array<T>>{x});
    Var<T> y = f(vars[0]);
    auto lin = linearized_vjp(y, vars);
    // Row j of the Jacobian of g = u^T J in u is d g_j / du: column j of J, one sweep per input element.
    Array<T> columns = jacobian_by_rows(reshape(lin.g[0], {-1}), lin.u);
    columns.reshape({x.size(), y.size()});
    Array<T> jac = xt::transpose(columns);
    Shape shape = y.shape();
    shape.insert(shape.end(), x.shape().begin(), x.shape().end());
    jac.reshape(shape);
    return jac;
}

template <class T>
Array<T> hessian(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x) {
    Tape tape;
    EnableGrad recording;
    auto vars = params_of(std::vector<Array<T>>{x});
    Var<T> y = f(vars[0]);
    check_scalar("hessian", y);
    // The Hessian is the Jacobian of the recorded gradient (zero when f is constant in x).
    Var<T> g = y.requires_grad() ? grad(y, vars, {.retain_graph = true, .create_graph = true})[0]
                                 : constant(Array<T>(xt::zeros<T>(x.shape())));
    return jacobian_by_rows(g, vars[0]);
}

template <class T>
std::vector<Array<T>> hvp(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs,
                          const std::vector<Array<T>>& vs) {
    if (vs.size() != xs.size()) throw shape_error(fmt::format("hvp: {} vectors for {} inputs", vs.size(), xs.size()));
    for (std::size_t i = 0; i < xs.size(); ++i) check_shape("hvp", "vector", vs[i], shape_of(xs[i]));
    Tape tape;
    EnableGrad recording;
    auto vars = params_of(xs);
    Var<T> y = f(vars);
    check_scalar("hvp", y);
    std::vector<Array<T>> zeros;
    for (const auto& x : xs) zeros.push_back(xt::zeros<T>(x.shape()));
    if (!y.requires_grad()) return zeros;
    auto g = grad(y, vars, {.retain_graph = true, .create_graph = true});
    Var<T> inner = scalar(T(0));
    for (std::size_t i = 0; i < vars.size(); ++i) inner = inner + sum(g[i] * constant(vs[i]));
    return vjp_arrays(inner, vars, constant(Array<T>(T(1))));
}

template <class T>
Array<T> hvp(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x, const Array<T>& v) {
    return hvp<T>([&f](const std::vector<Var<T>>& in) { return f(in[0]); }, std::vector<Array<T>>{x},
                  std::vector<Array<T>>{v})[0];
}

#define AD_INSTANTIATE(T)                                                                                          \
    template ValueAndGrad<T> value_and_grad<T>(const detail::nondeduced<UnaryFn<T>>&, const Array<T>&);            \
    template ValueAndGrads<T> value_and_grad<T>(const detail::nondeduced<MultiFn<T>>&, const std::vector<Array<T>>&); \
    template ValueAndGrad<T> vjp<T>(const detail::nondeduced<UnaryFn<T>>&, const Array<T>&, const Array<T>&);      \
    template ValueAndGrads<T> vjp<T>(const detail::nondeduced<MultiFn<T>>&, const std::vector<Array<T>>&,          \
                                     const Array<T>&);                                                             \
    template ValueAndGrad<T> jvp<T>(const detail::nondeduced<UnaryFn<T>>&, const Array<T>&, const Array<T>&);      \
    template ValueAndGrad<T> jvp<T>(const detail::nondeduced<MultiFn<T>>&, const std::vector<Array<T>>&,           \
                                    const std::vector<Array<T>>&);                                                 \
    template Array<T> jacrev<T>(const detail::nondeduced<UnaryFn<T>>&, const Array<T>&);                           \
    template Array<T> jacfwd<T>(const detail::nondeduced<UnaryFn<T>>&, const Array<T>&);                           \
    template Array<T> hessian<T>(const detail::nondeduced<UnaryFn<T>>&, const Array<T>&);                          \
    template Array<T> hvp<T>(const detail::nondeduced<UnaryFn<T>>&, const Array<T>&, const Array<T>&);             \
    template std::vector<Array<T>> hvp<T>(const detail::nondeduced<MultiFn<T>>&, const std::vector<Array<T>>&,     \
                                          const std::vector<Array<T>>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad

// Anomaly mode and annotations (autodiff/debug.hpp): a NaN planted at a
// known line is reported at that line, forward and backward, in float and
// double, on nested tapes and under create_graph.

#include <cmath>
#include <limits>
#include <string>
#include <thread>

#include "support/test_support.hpp"

namespace ad {
namespace {

// The lines of the planted ops, set by the functions that plant them.
int log_line = 0;
int sqrt_line = 0;
int pow_line = 0;

/// A deep composite function whose `log` reads a negative value three ops
/// before the loss.
template <class T>
Var<T> composite(const Var<T>& x) {
    Var<T> a = x * T(2);
    Var<T> b = tanh(a) - T(2);  // in (-3, -1): negative
    log_line = __LINE__ + 1;
    Var<T> c = log(b);
    Var<T> d = c * c;
    Var<T> e = exp(d) + a;
    return sum(e);
}

/// sqrt at 0: a finite forward whose VJP (g / (2 sqrt x)) is infinite.
template <class T>
Var<T> root_loss(const Var<T>& x) {
    Var<T> s = x * x;
    sqrt_line = __LINE__ + 1;
    Var<T> r = sqrt(s);
    return sum(r * T(3));
}

/// x^1.5 at 0: finite value and first derivative, infinite second derivative.
template <class T>
Var<T> power_loss(const Var<T>& x) {
    pow_line = __LINE__ + 1;
    Var<T> p = pow(x, T(1.5));
    return sum(p);
}

std::string here(int line) { return std::string(__FILE__) + ":" + std::to_string(line); }

template <class T>
std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const value_error& e) {
        return e.what();
    }
    return "(no value_error)";
}

}  // namespace

TEST_CASE_TEMPLATE("anomaly mode names the forward op that made a NaN, at the user's line", T, float, double) {
    Tape tape;
    Var<T> x = param<T>({0.5, -0.25, 1.0});
    DetectAnomaly anomaly;
    const std::string message = message_of<T>([&] { composite(x); });
    INFO(message);
    CHECK(message.rfind("log: anomaly:", 0) == 0);
    CHECK(message.find("holds nan at index (0,)") != std::string::npos);
    CHECK(message.find("from finite inputs of shapes (3,);") != std::string::npos);
    CHECK(message.find(here(log_line)) != std::string::npos);
    CHECK(message.find("composite") != std::string::npos);
    // The failed op left the tape as it was: mul, tanh, shift recorded, not log.
    CHECK(tape.size() == 3);
    CHECK(std::string(tape.op_name(tape.size() - 1)) != "log");
}

TEST_CASE_TEMPLATE("without anomaly mode the NaN flows to the loss, and backward rejects it", T, float, double) {
    Tape tape;
    Var<T> x = param<T>({0.5, -0.25, 1.0});
    Var<T> loss = composite(x);
    CHECK(std::isnan(loss.item()));
    CHECK_THROWS_AS(loss.backward(), value_error);
}

TEST_CASE_TEMPLATE("a NaN loss from data never passes silently in anomaly mode", T, float, double) {
    // The data hold the NaN, so no op turns finite inputs into a NaN; the
    // backward names the op that computed the loss and where.
    Tape tape;
    DetectAnomaly anomaly;
    Var<T> w = param<T>({1.0, 2.0});
    Var<T> data = constant<T>({std::numeric_limits<T>::quiet_NaN(), 1.0});
    const int line = __LINE__ + 1;
    Var<T> loss = sum(w * data);
    const std::string message = message_of<T>([&] { loss.backward(); });
    INFO(message);
    CHECK(message.rfind("backward:", 0) == 0);
    CHECK(message.find("holds nan") != std::string::npos);
    CHECK(message.find("computed by sum") != std::string::npos);
    CHECK(message.find(here(line)) != std::string::npos);
}

TEST_CASE_TEMPLATE("anomaly mode names the VJP that turned a finite cotangent infinite, at the forward call", T, float,
                   double) {
    Tape tape;
    Var<T> x = param<T>({0.0, 2.0});
    DetectAnomaly anomaly;
    Var<T> loss = root_loss(x);  // finite: sqrt(0) = 0
    CHECK(loss.item() == doctest::Approx(6.0));
    const std::string message = message_of<T>([&] { loss.backward(); });
    INFO(message);
    CHECK(message.rfind("sqrt backward: anomaly:", 0) == 0);
    CHECK(message.find("cotangent of input 0 (shape (2,))") != std::string::npos);
    CHECK(message.find("inf at index (0,)") != std::string::npos);
    CHECK(message.find(here(sqrt_line)) != std::string::npos);
    // The failed sweep left no gradient behind: grad() still reads zeros.
    CHECK(x.grad()(1) == 0);
}

TEST_CASE_TEMPLATE("anomaly mode names a product whose VJP overflowed, though its cotangent nobody else holds", T,
                   float, double) {
    // Without anomaly mode mul's VJP scales a cotangent that only the sweep
    // holds in place; with it, the finite cotangent must survive to be compared.
    Tape tape;
    const T big = std::sqrt(std::numeric_limits<T>::max()) * T(2);
    Var<T> x = param<T>({T(1) / big});
    DetectAnomaly anomaly;
    Var<T> y = x * constant<T>({big});        // 1
    Var<T> loss = sum(y * constant<T>({big}));  // big: finite; its VJP gives y the finite cotangent big
    const std::string message = message_of<T>([&] { loss.backward(); });
    INFO(message);
    CHECK(message.rfind("mul backward: anomaly:", 0) == 0);
    CHECK(message.find("inf at index (0,) of the cotangent of input 0") != std::string::npos);
}

TEST_CASE_TEMPLATE("under create_graph, a bad second derivative names the op whose VJP recorded it", T, float, double) {
    Tape tape;
    Var<T> x = param<T>({0.0, 1.0});
    DetectAnomaly anomaly;
    Var<T> loss = power_loss(x);
    std::vector<Var<T>> g = grad(loss, {x}, {.create_graph = true});
    CHECK(g[0].value()(0) == 0);  // 1.5 sqrt(0): finite
    const std::string message = message_of<T>([&] { sum(g[0]).backward(); });
    INFO(message);
    CHECK(message.find("backward: anomaly:") != std::string::npos);
    CHECK(message.find("the backward sweep of pow") != std::string::npos);
    CHECK(message.find(here(pow_line)) != std::string::npos);
}

TEST_CASE("anomaly mode checks the records of a nested tape against the call in the inner function") {
    Tape outer;
    DetectAnomaly anomaly;
    Var<double> x = param<double>({0.0, 4.0});
    std::string message;
    {
        Tape inner;
        Var<double> loss = root_loss(x);
        message = message_of<double>([&] { loss.backward(); });
    }
    CHECK(message.find(here(sqrt_line)) != std::string::npos);
    CHECK(outer.size() == 0);
}

TEST_CASE("anomaly mode is per thread, nestable, and also a tape option") {
    CHECK_FALSE(anomaly_mode());
    {
        DetectAnomaly on;
        CHECK(anomaly_mode());
        {
            DetectAnomaly off(false);
            CHECK_FALSE(anomaly_mode());
            Tape tape;
            Var<double> x = param<double>({-1.0});
            CHECK_NOTHROW(log(x));  // off inside
        }
        CHECK(anomaly_mode());
        bool other_thread = true;
        std::thread([&] { other_thread = anomaly_mode(); }).join();
        CHECK_FALSE(other_thread);
    }
    CHECK_FALSE(anomaly_mode());
    {
        Tape tape({.detect_anomaly = true});
        CHECK(anomaly_mode());
        Var<double> x = param<double>({-1.0});
        CHECK_THROWS_AS(log(x), value_error);
    }
    CHECK_FALSE(anomaly_mode());
    // Every tool is off again: ops take the fast path.
    CHECK(detail::recording_state.observe == 0);
}

TEST_CASE("anomaly mode lets intended infinities through: an op whose inputs are not finite is not blamed") {
    Tape tape;
    DetectAnomaly anomaly;
    Var<double> scores = param<double>({1.0, 2.0, 3.0});
    Var<double> mask = constant<double>({0.0, 0.0, -std::numeric_limits<double>::infinity()});
    Var<double> p = softmax(scores + mask, 0);
    CHECK(p.value()(2) == 0);
    CHECK_NOTHROW(sum(p * p).backward());
    CHECK(std::isfinite(scores.grad()(0)));
}

TEST_CASE_TEMPLATE("annotated records carry their call site, shape and kept bytes", T, float, double) {
    Tape tape({.annotate = true});
    Var<T> w = param<T>({1.0, 2.0, 3.0});
    const int line = __LINE__ + 1;
    Var<T> y = exp(w);
    Var<T> loss = sum(y * y);
    const std::vector<RecordInfo> records = describe(tape);
    REQUIRE(records.size() == 3);
    CHECK(std::string(records[0].op) == "exp");
    REQUIRE(records[0].call_site.has_value());
    CHECK(records[0].call_site->file == __FILE__);
    CHECK(records[0].call_site->line == static_cast<unsigned>(line));
    CHECK(records[0].shape == Shape{3});
    CHECK(records[0].element_size == sizeof(T));
    CHECK(records[0].kept_bytes >= 3 * sizeof(T));  // exp keeps its result
    REQUIRE(records[0].inputs.size() == 1);
    CHECK(records[0].inputs[0].record == -1);
    CHECK(records[0].inputs[0].parameter == w.node_ptr().get());
    // mul reads y twice; sum reads the product.
    REQUIRE(records[1].inputs.size() == 2);
    CHECK(records[1].inputs[0].record == 0);
    CHECK(records[1].inputs[1].record == 0);
    CHECK(records[2].inputs[0].record == 1);
    CHECK(records[1].kept_bytes >= 2 * 3 * sizeof(T));  // mul captured both factors
    CHECK(records[2].shape == Shape{});
}

TEST_CASE("records made without annotation are described from the tape alone") {
    Tape tape;
    Var<double> w = param<double>({1.0, 2.0});
    Var<double> loss = sum(sin(w));
    const std::vector<RecordInfo> records = describe(tape);
    REQUIRE(records.size() == 2);
    CHECK_FALSE(records[0].call_site.has_value());
    CHECK(records[0].shape == Shape{2});  // from sum's input
    CHECK(records[1].inputs.at(0).record == 0);
    CHECK(records[0].kept_bytes > 0);
}

}  // namespace ad

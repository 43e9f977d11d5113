#include "nn_test_support.hpp"

namespace {

using namespace ad;

/// A user's own module: y = a * x with one learnable scalar per column.
struct ColumnScale final : nn::Module<double> {
    Var<double> a = register_parameter("a", Array<double>{2.0, -1.0});
    Var<double> forward(const Var<double>& x) override { return x * a; }
};

/// A model with submodules, a direct parameter, a buffer and a tied layer.
struct Net final : nn::Module<double> {
    std::shared_ptr<nn::Linear<double>> encoder = register_module("encoder", nn::Linear<double>(3, 4, 1));
    std::shared_ptr<nn::MLP<double>> head = register_module("head", nn::MLP<double>({4, 2, 1}));
    Var<double> scale = register_parameter("scale", Array<double>{1.5});
    std::shared_ptr<Array<double>> steps = register_buffer("steps", Array<double>{0.0});
    std::shared_ptr<nn::Linear<double>> tied = register_module("tied", encoder);  // weights shared with encoder

    Var<double> forward(const Var<double>& x) override { return (*head)((*encoder)(x)) * scale; }
};

/// A module whose forward takes a logarithm: NaN for a negative input.
int log_line = 0;
struct LogOf final : nn::Module<double> {
    Var<double> forward(const Var<double>& x) override {
        log_line = __LINE__ + 1;
        return log(x);
    }
    std::string describe() const override { return "LogOf"; }
};

/// A model that calls its children through operator(), one level down.
struct Block final : nn::Module<double> {
    std::shared_ptr<nn::Linear<double>> fc =
        register_module("fc", nn::Linear<double>(Array<double>{{-1.0, 0.0}, {0.0, -1.0}}, Array<double>{0.0, 0.0}));
    std::shared_ptr<LogOf> out = register_module("out", LogOf());
    Var<double> forward(const Var<double>& x) override { return (*out)((*fc)(x)); }
};

TEST_CASE("Module: a user's module plugs into parameters, zero_grad and Sequential naming") {
    Tape tape;
    auto scale = std::make_shared<ColumnScale>();
    nn::Sequential<double> model;
    model.add(std::make_shared<nn::Identity<double>>()).add(scale);

    auto params = model.named_parameters();
    REQUIRE(params.size() == 1);
    CHECK(params[0].name == "layers.1.a");
    CHECK(model.parameter_count() == 2);

    Array<double> x{{1.0, 2.0}, {3.0, 4.0}};
    auto y = model(x);  // an Array is taken as a constant batch
    CHECK(y.value() == Array<double>{{2.0, -2.0}, {6.0, -4.0}});

    sum(y).backward();
    // d sum(x a) / d a_j = column sums of x.
    CHECK(scale->a.grad() == Array<double>{4.0, 6.0});
    model.zero_grad();
    CHECK(scale->a.grad() == Array<double>{0.0, 0.0});
}

TEST_CASE("Module: parameters are shared handles, not copies") {
    nn::Linear<double> layer(3, 2, 7);
    auto p = layer.named_parameters();
    p[0].var.mutable_value().fill(0.5);
    CHECK(layer.weight().value() == Array<double>(xt::full_like(layer.weight().value(), 0.5)));
}

}  // namespace

namespace {

using namespace ad;

TEST_CASE("Module: registration gives dotted names, counts, buffers and a summary") {
    Net net;
    std::vector<std::string> names;
    for (const auto& p : net.named_parameters()) names.push_back(p.name);
    // Registration order; the tied layer's parameters are listed once, under their first name.
    CHECK(names == std::vector<std::string>{"scale", "encoder.weight", "encoder.bias", "head.layers.0.weight",
                                            "head.layers.0.bias", "head.layers.2.weight", "head.layers.2.bias"});
    CHECK(net.parameters().size() == names.size());
    CHECK(net.named_parameters(false).size() == 1);
    CHECK(net.parameter_count() == 1 + (3 * 4 + 4) + (4 * 2 + 2) + (2 * 1 + 1));

    auto buffers = net.named_buffers();
    REQUIRE(buffers.size() == 1);
    CHECK(buffers[0].name == "steps");
    CHECK(buffers[0].value == net.steps);

    std::vector<std::string> modules;
    for (const auto& m : net.named_modules()) modules.push_back(m.name);
    CHECK(modules == std::vector<std::string>{"encoder", "head", "head.layers", "head.layers.0", "head.layers.1",
                                              "head.layers.2", "head.layers.3", "tied"});

    CHECK(net.summary() ==
          "Net(\n"
          "  (encoder): Linear(3, 4)\n"
          "  (head): MLP(\n"
          "    (layers): ModuleList(\n"
          "      (0): Linear(4, 2)\n"
          "      (1): Sigmoid\n"
          "      (2): Linear(2, 1)\n"
          "      (3): Sigmoid\n"
          "    )\n"
          "  )\n"
          "  (tied): Linear(3, 4)\n"
          ")\n"
          "parameters: 30\n");
}

TEST_CASE("Module: train and eval reach every submodule, new children follow their parent") {
    Net net;
    CHECK(net.is_training());
    net.eval();
    CHECK_FALSE(net.is_training());
    for (const auto& m : net.named_modules()) CHECK_FALSE(m.module->is_training());
    net.train();
    for (const auto& m : net.named_modules()) CHECK(m.module->is_training());
}

TEST_CASE("Module: zero_grad reaches parameters at every depth") {
    Tape tape;
    Net net;
    sum(net(Array<double>{{1.0, 2.0, 3.0}})).backward();
    bool any_nonzero = false;
    for (const auto& p : net.named_parameters()) any_nonzero = any_nonzero || xt::any(xt::not_equal(p.var.grad(), 0.0));
    CHECK(any_nonzero);
    net.zero_grad();
    for (const auto& p : net.named_parameters()) CHECK(xt::all(xt::equal(p.var.grad(), 0.0)));
}

struct BadNames final : nn::Module<double> {
    void add(const std::string& name) { register_parameter(name, Array<double>{1.0}); }
    void add_constant() { register_parameter("c", constant(Array<double>{1.0})); }
    void add_null() { register_module("m", std::shared_ptr<nn::Linear<double>>()); }
};

TEST_CASE("Module: bad registrations are value_errors naming the module") {
    BadNames m;
    m.add("w");
    CHECK_THROWS_WITH_AS(m.add("w"), "BadNames: the name 'w' is registered already", value_error);
    CHECK_THROWS_WITH_AS(m.add("a.b"), "BadNames: parameter name 'a.b' must be non-empty and without dots", value_error);
    CHECK_THROWS_WITH_AS(m.add(""), "BadNames: parameter name '' must be non-empty and without dots", value_error);
    CHECK_THROWS_WITH_AS(m.add_constant(), "BadNames: 'c' is not a parameter (make it with ad::param)", value_error);
    CHECK_THROWS_WITH_AS(m.add_null(), "BadNames: module 'm' is null", value_error);
    CHECK(m.named_parameters().size() == 1);
    // A module without a one-input forward says so.
    nn::ModuleList<double> list;
    CHECK_THROWS_WITH_AS(list(Array<double>{1.0}), "ModuleList: has no forward of one input; call its own forward",
                         value_error);
}

TEST_CASE("Module: in anomaly mode, a NaN made inside a module names the module's path and the user's line") {
    Tape tape;
    DetectAnomaly anomaly;
    nn::Sequential<double> model;
    model.add(std::make_shared<Block>());
    const std::string file = __FILE__;
    try {
        model(constant<double>({{1.0, 2.0}}));
        FAIL("no value_error");
    } catch (const value_error& e) {
        const std::string message = e.what();
        INFO(message);
        CHECK(message.find("log: anomaly:") != std::string::npos);
        CHECK(message.find(file + ":" + std::to_string(log_line)) != std::string::npos);
        CHECK(message.find("inside module layers.0.out (LogOf)") != std::string::npos);
    }
    CHECK(tape.size() == 1);  // the Linear's record; the failed log left none
    // The module paths are gone with the calls.
    CHECK(detail::current_scope() == nullptr);
}

TEST_CASE("Module: annotated records carry the path of the module call that made them") {
    Tape tape({.annotate = true});
    Block block;
    Var<double> y = block(constant<double>({{-1.0, -2.0}}));
    const auto records = describe(tape);
    REQUIRE(records.size() == 2);
    CHECK(records[0].module == "fc (Linear(2, 2))");
    CHECK(records[1].module == "out (LogOf)");
    Var<double> z = sum(y);
    CHECK(describe(tape).back().module.empty());  // outside any module
}

}  // namespace

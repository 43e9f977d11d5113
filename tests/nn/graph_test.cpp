#include "nn_test_support.hpp"
#include "support/graph_support.hpp"

namespace {

using namespace ad;
using ad::test::dot_edges;
using ad::test::dot_nodes;

/// Three records per call: y = exp(x * w) + w.
struct Block final : nn::Module<double> {
    Var<double> w = register_parameter("w", Array<double>{0.5, -0.5});
    Var<double> forward(const Var<double>& x) override { return exp(x * w) + w; }
};

struct TwoBlocks final : nn::Module<double> {
    std::shared_ptr<Block> first = register_module("first", Block());
    std::shared_ptr<Block> second = register_module("second", Block());
    Var<double> forward(const Var<double>& x) override { return (*second)((*first)(x)); }
};

/// blocks.0.a, blocks.0.b, blocks.1.a, blocks.1.b: two levels of modules.
struct Pair final : nn::Module<double> {
    std::shared_ptr<Block> a = register_module("a", Block());
    std::shared_ptr<Block> b = register_module("b", Block());
    Var<double> forward(const Var<double>& x) override { return (*b)((*a)(x)); }
};
struct Nested final : nn::Module<double> {
    std::shared_ptr<nn::ModuleList<double>> blocks = register_module("blocks", nn::ModuleList<double>());
    Nested() {
        blocks->push_back(std::make_shared<Pair>());
        blocks->push_back(std::make_shared<Pair>());
    }
    Var<double> forward(const Var<double>& x) override { return (*(*blocks)[1])((*(*blocks)[0])(x)); }
};

std::size_t starting_with(const std::map<std::string, std::string>& nodes, char c) {
    std::size_t n = 0;
    for (const auto& node : nodes) n += node.first[0] == c;
    return n;
}

}  // namespace

TEST_CASE("nn::to_dot: parameters are named by their path in the model") {
    Tape tape;
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 1);
    const Array<double> x{{0.0, 1.0}, {1.0, 0.0}};
    const Array<double> y = xt::ones<double>({2, 1});
    auto loss = nn::half_sse(model(x), y, Reduction::sum);
    const std::string dot = nn::to_dot(loss, model);
    std::set<std::string> named;
    for (const auto& [id, label] : dot_nodes(dot)) {
        if (id[0] == 'p') named.insert(label.substr(0, label.find("\\n")));
    }
    std::set<std::string> expected;
    for (const auto& p : model.named_parameters()) expected.insert(p.name);
    CHECK(expected == std::set<std::string>{"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"});
    CHECK(named == expected);
    CHECK(dot.find("layers.0.weight\\n(3, 2) float64") != std::string::npos);
    // Names given by the caller are kept.
    DotOptions options;
    options.names[model.linear(0).weight().node_ptr().get()] = "W1";
    const std::string renamed = nn::to_dot(loss, model, options);
    CHECK(renamed.find("W1\\n(3, 2)") != std::string::npos);
    CHECK(renamed.find("layers.0.weight") == std::string::npos);
    ad::test::check_dot_parses(dot);
}

TEST_CASE("nn::to_dot: collapse_modules draws one node per module call; otherwise a cluster per call") {
    Tape tape{{.annotate = true}};
    TwoBlocks model;
    auto loss = sum(model(constant(Array<double>{1.0, 2.0})));
    REQUIRE(tape.size() == 7);  // 3 per block and the sum, outside the model

    const std::string detailed = nn::to_dot(loss, model);
    const auto records = dot_nodes(detailed);
    CHECK(starting_with(records, 'r') == 7);
    CHECK(starting_with(records, 'p') == 2);
    CHECK(detailed.find("subgraph cluster_0 {") != std::string::npos);
    CHECK(detailed.find("subgraph cluster_1 {") != std::string::npos);
    CHECK(detailed.find("subgraph cluster_2 {") == std::string::npos);
    CHECK(detailed.find("label=\"first (") != std::string::npos);
    CHECK(detailed.find("label=\"second (") != std::string::npos);
    // A parameter only one call reads is drawn inside that call's cluster.
    const std::size_t cluster = detailed.find("subgraph cluster_0 {"), end = detailed.find("  }", cluster);
    const std::size_t w = detailed.find("p0 [");
    CHECK((cluster < w && w < end));
    CHECK(detailed.find("first.w\\n(2,) float64") > cluster);

    DotOptions options;
    options.collapse_modules = true;
    const std::string collapsed = nn::to_dot(loss, model, options);
    const auto boxes = dot_nodes(collapsed);
    CHECK(collapsed.find("subgraph") == std::string::npos);
    REQUIRE(starting_with(boxes, 'm') == 2);
    CHECK(starting_with(boxes, 'r') == 1);  // the sum, outside the modules
    std::string first, second;
    for (const auto& [id, label] : boxes) {
        if (label.rfind("first (", 0) == 0) first = id;
        if (label.rfind("second (", 0) == 0) second = id;
        if (id[0] == 'm') CHECK(label.find("3 ops: mul, exp, add") != std::string::npos);
    }
    REQUIRE(!first.empty());
    REQUIRE(!second.empty());
    std::string sum_id;
    for (const auto& [id, label] : boxes) {
        if (id[0] == 'r') sum_id = id;
    }
    const std::set<test::DotEdge> expected{{"p0", first, ""}, {first, second, ""}, {"p1", second, ""}, {second, sum_id, ""}};
    CHECK(dot_edges(collapsed) == expected);
    CHECK(dot_nodes(collapsed).at("p0").rfind("first.w\\n", 0) == 0);
    // A box keeps what its records keep.
    std::size_t first_bytes = 0;
    for (const auto& info : describe(tape)) {
        if (info.module.rfind("first (", 0) == 0) first_bytes += info.kept_bytes;
    }
    CHECK(boxes.at(first).find("keeps " + detail::human_bytes(first_bytes)) != std::string::npos);
    ad::test::check_dot_parses(detailed);
    ad::test::check_dot_parses(collapsed);

    // The backward sweep between the boxes: the sum, then second, then first.
    options.show_backward = true;
    const auto sweep = dot_edges(nn::to_dot(loss, model, options), "dashed");
    CHECK(sweep.count({sum_id, second, "1"}) == 1);
    CHECK(sweep.count({second, first, "4"}) == 1);  // after the sum and second's add and exp
    CHECK(sweep.count({second, "p1", "2"}) == 1);   // second's add reaches its w first
}

TEST_CASE("nn::to_dot: float models name float32") {
    Tape tape;
    nn::MLP<float> model({2, 2, 1}, nn::Activation::sigmoid, 1);
    const Array<float> x = xt::ones<float>({1, 2}), y = xt::ones<float>({1, 1});
    auto loss = nn::half_sse(model(x), y, Reduction::sum);
    const std::string dot = nn::to_dot(loss, model);
    CHECK(dot.find("layers.2.bias\\n(1,) float32") != std::string::npos);
    CHECK(dot.find("float64") == std::string::npos);
    ad::test::check_dot_parses(dot);
}

TEST_CASE("nn::to_dot: collapse_depth chooses the level of the module calls drawn as one node") {
    Tape tape{{.annotate = true}};
    Nested model;
    auto loss = sum(model(constant(Array<double>{1.0, 2.0})));
    REQUIRE(tape.size() == 4 * 3 + 1);
    DotOptions options;
    options.collapse_modules = true;
    // Depth 1: blocks.0 and blocks.1 (a list index belongs to its list's level).
    auto boxes = dot_nodes(nn::to_dot(loss, model, options));
    REQUIRE(starting_with(boxes, 'm') == 2);
    std::set<std::string> titles;
    for (const auto& [id, label] : boxes) {
        if (id[0] == 'm') {
            titles.insert(label.substr(0, label.find("\\n")));
            CHECK(label.find("6 ops: ") != std::string::npos);
        }
    }
    CHECK(titles == std::set<std::string>{"blocks.0", "blocks.1"});
    // Depth 2: each Block call, titled by its module label.
    options.collapse_depth = 2;
    const std::string dot = nn::to_dot(loss, model, options);
    boxes = dot_nodes(dot);
    CHECK(starting_with(boxes, 'm') == 4);
    titles.clear();
    for (const auto& [id, label] : boxes) {
        if (id[0] == 'm') titles.insert(label.substr(0, label.find(" (")));
    }
    CHECK(titles == std::set<std::string>{"blocks.0.a", "blocks.0.b", "blocks.1.a", "blocks.1.b"});
    CHECK(starting_with(boxes, 'p') == 4);
    ad::test::check_dot_parses(dot);
}

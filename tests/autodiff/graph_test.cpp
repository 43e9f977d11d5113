#include "support/graph_support.hpp"
#include "support/test_support.hpp"

using ad::Array;
using ad::test::DotEdge;
using ad::test::dot_edges;
using ad::test::dot_nodes;

namespace {

/// The node id whose label starts with `name` followed by a line break.
std::string node_named(const std::map<std::string, std::string>& nodes, const std::string& name) {
    for (const auto& [id, label] : nodes) {
        if (label.rfind(name + "\\n", 0) == 0) return id;
    }
    return "";
}

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

/// A graph with fan-out, built by hand: r0 = a * b, r1 = exp(r0),
/// r2 = r0 + r1, r3 = sum(r2); a and b are parameters.
struct HandGraph {
    ad::Var<double> a = ad::param(Array<double>{1.0, 2.0});
    ad::Var<double> b = ad::param(Array<double>{3.0, 4.0});
    ad::Var<double> loss;
    HandGraph() {
        auto c = a * b;
        loss = ad::sum(c + ad::exp(c));
    }
};

}  // namespace

TEST_CASE("to_dot: one node per record, labelled with its op, shape, dtype and kept bytes") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.5, -1.0, 2.0});
    auto w = ad::param(Array<double>{1.0, 2.0, 3.0});
    auto loss = ad::sum(ad::sigmoid(x) * w);
    REQUIRE(tape.size() == 3);
    const std::string dot = ad::to_dot(tape);
    const auto nodes = dot_nodes(dot);
    std::size_t records = 0;
    for (const auto& [id, label] : nodes) {
        if (id[0] != 'r') continue;
        ++records;
        const std::size_t i = std::stoul(id.substr(1));
        REQUIRE(i < tape.size());
        CHECK(label.rfind(std::string(tape.op_name(i)) + "\\n", 0) == 0);
        CHECK(label.find("float64") != std::string::npos);
        CHECK(label.find("keeps ") != std::string::npos);
    }
    CHECK(records == tape.size());
    CHECK(nodes.size() == tape.size() + 2);  // and the two parameters
    CHECK(nodes.at("r0").find("(3,)") != std::string::npos);
    // The sum's result is neither kept nor read by a later record: its shape
    // is unknown to the tape, but known from the loss.
    CHECK(nodes.at("r2").find("shape ?") != std::string::npos);
    CHECK(dot_nodes(ad::to_dot(loss)).at("r2").find("\\n() float64") != std::string::npos);
    // The sigmoid's VJP reads its result: 3 doubles at least.
    const auto info = ad::describe(tape);
    CHECK(info[0].kept_bytes >= 3 * sizeof(double));
    CHECK(nodes.at("r0").find("keeps " + ad::detail::human_bytes(info[0].kept_bytes)) != std::string::npos);
    ad::test::check_dot_parses(dot);
}

TEST_CASE("to_dot: bytes are written for a reader") {
    CHECK(ad::detail::human_bytes(0) == "0 B");
    CHECK(ad::detail::human_bytes(1023) == "1023 B");
    CHECK(ad::detail::human_bytes(1536) == "1.5 KiB");
    CHECK(ad::detail::human_bytes(3 * 1024 * 1024) == "3.0 MiB");
}

TEST_CASE("to_dot: edges follow the data flow of a hand-built graph") {
    ad::Tape tape;
    HandGraph g;
    REQUIRE(tape.size() == 4);
    REQUIRE(std::string(tape.op_name(1)) == "exp");
    ad::DotOptions options;
    options.names[g.a.node_ptr().get()] = "a";
    options.names[g.b.node_ptr().get()] = "b";
    const std::string dot = ad::to_dot(g.loss, options);
    const auto nodes = dot_nodes(dot);
    const std::string pa = node_named(nodes, "a"), pb = node_named(nodes, "b");
    REQUIRE(!pa.empty());
    REQUIRE(!pb.empty());
    CHECK(pa != pb);
    const std::set<DotEdge> expected{{pa, "r0", ""}, {pb, "r0", ""}, {"r0", "r1", ""},
                                     {"r0", "r2", ""}, {"r1", "r2", ""}, {"r2", "r3", ""}};
    CHECK(dot_edges(dot) == expected);
    // The loss's record is drawn with a double border, and only it.
    CHECK(count(dot, "peripheries=2") == 1);
    CHECK(dot.find("r3 [shape=box, style=\"rounded,filled\", fillcolor=\"#e3eefa\", peripheries=2") != std::string::npos);
    // No backward edges unless asked for.
    CHECK(dot_edges(dot, "dashed").empty());
    ad::test::check_dot_parses(dot);
}

TEST_CASE("to_dot: show_backward numbers the VJPs in sweep order, from the loss down") {
    ad::Tape tape;
    HandGraph g;
    ad::DotOptions options;
    options.show_backward = true;
    const std::string dot = ad::to_dot(g.loss, options);
    const auto nodes = dot_nodes(dot);
    // Unnamed parameters: "parameter" and their shape.
    std::vector<std::string> parameters;
    for (const auto& [id, label] : nodes) {
        if (id[0] == 'p') {
            CHECK(label == "parameter\\n(2,) float64");
            parameters.push_back(id);
        }
    }
    REQUIRE(parameters.size() == 2);
    // The sweep runs sum (1), add (2), exp (3), mul (4); cotangents go output -> input.
    const std::set<DotEdge> expected{{"r3", "r2", "1"}, {"r2", "r0", "2"}, {"r2", "r1", "2"},
                                     {"r1", "r0", "3"}, {"r0", parameters[0], "4"}, {"r0", parameters[1], "4"}};
    CHECK(dot_edges(dot, "dashed") == expected);
    CHECK(dot_edges(dot).size() == 6);  // the data flow is still drawn
    ad::test::check_dot_parses(dot);
}

TEST_CASE("to_dot: a loss's graph holds only the records it depends on") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto unrelated = ad::exp(x);        // r0: not in the loss
    auto loss = ad::sum(ad::sin(x));    // r1, r2
    const auto nodes = dot_nodes(ad::to_dot(loss));
    CHECK(nodes.count("r0") == 0);
    CHECK(nodes.count("r1") == 1);
    CHECK(nodes.count("r2") == 1);
    CHECK(dot_nodes(ad::to_dot(tape)).count("r0") == 1);  // the whole tape has it
    (void)unrelated;
}

TEST_CASE("to_dot: a loss of 0-d ops is drawn from the run of scalar ops that holds it") {
    ad::Tape tape;
    auto w = ad::param(Array<double>{1.0, 2.0});
    auto unrelated = ad::exp(w);        // r0: not in the loss
    auto s = ad::sum(w);                // r1
    auto x = ad::param(Array<double>(0.5));
    auto loss = ad::exp(s * x) + x;     // r2: three 0-d ops, one run
    const std::string dot = ad::to_dot(loss);
    const auto nodes = dot_nodes(dot);
    CHECK(nodes.count("r0") == 0);
    CHECK(nodes.count("r1") == 1);
    CHECK(nodes.count("r2") == 1);
    CHECK(node_named(nodes, "scalar ops") == "r2");
    ad::test::check_dot_parses(dot);
    (void)unrelated;
}

TEST_CASE("to_dot: float and double records name their dtype") {
    {
        ad::Tape tape;
        auto x = ad::param(Array<float>{1.0f, 2.0f});
        auto loss = ad::sum(ad::tanh(x));
        const std::string dot = ad::to_dot(loss);
        CHECK(count(dot, "float32") == 3);  // two records and the parameter
        CHECK(dot.find("float64") == std::string::npos);
        ad::test::check_dot_parses(dot);
    }
    {
        ad::Tape tape;
        auto x = ad::param(Array<double>{1.0, 2.0});
        auto loss = ad::sum(ad::tanh(x));
        const std::string dot = ad::to_dot(loss);
        CHECK(count(dot, "float64") == 3);
        CHECK(dot.find("float32") == std::string::npos);
    }
}

TEST_CASE("to_dot: names and titles are escaped for DOT") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto loss = ad::sum(x * x);
    ad::DotOptions options;
    options.names[x.node_ptr().get()] = "odd \"name\" with \\ and\nbreak";
    options.title = "a \"quoted\" title";
    const std::string dot = ad::to_dot(loss, options);
    CHECK(dot.find(R"re(label="odd \"name\" with \\ and\nbreak\n(2,) float64")re") != std::string::npos);
    CHECK(dot.find(R"re(label="a \"quoted\" title")re") != std::string::npos);
    ad::test::check_dot_parses(dot);
}

TEST_CASE("to_dot: records of a create_graph sweep are shown as made by a VJP") {
    ad::Tape tape;
    ad::Annotate annotate;
    auto x = ad::param(Array<double>{0.5, 1.5});
    auto y = ad::sum(ad::exp(x) * x);
    const std::size_t forward_records = tape.size();
    ad::BackwardOptions create;
    create.create_graph = true;
    auto g = ad::grad(y, {x}, create)[0];
    auto penalty = ad::sum(g * g);
    REQUIRE(tape.size() > forward_records + 1);
    ad::DotOptions options;
    options.show_backward = true;
    const std::string dot = ad::to_dot(penalty, options);
    const auto info = ad::describe(tape);
    std::size_t made_by_sweep = 0;
    for (const auto& [id, label] : dot_nodes(dot)) {
        if (id[0] != 'r') continue;
        const std::size_t i = std::stoul(id.substr(1));
        const bool made = label.find("made by the VJP of") != std::string::npos;
        CHECK(made == (info[i].backward_of >= 0));
        made_by_sweep += made;
    }
    CHECK(made_by_sweep > 0);
    CHECK(!dot_edges(dot, "dotted").empty());
    // Not asked for, the sweep is not drawn.
    const std::string plain = ad::to_dot(penalty);
    CHECK(plain.find("made by the VJP of") == std::string::npos);
    CHECK(dot_edges(plain, "dotted").empty());
    ad::test::check_dot_parses(dot);
}

TEST_CASE("to_dot: a loss that no record of the current tape computed is a tape_error") {
    auto starts_with_to_dot = [](const auto& call) {
        try {
            call();
        } catch (const ad::tape_error& e) {
            return std::string(e.what()).rfind("to_dot:", 0) == 0;
        }
        return false;
    };
    auto p = ad::param(Array<double>{1.0});
    CHECK(starts_with_to_dot([&] { ad::to_dot(p); }));  // no tape
    ad::Tape tape;
    CHECK(starts_with_to_dot([&] { ad::to_dot(p); }));                   // a parameter
    CHECK(starts_with_to_dot([&] { ad::to_dot(ad::Var<double>()); }));  // empty
    CHECK(starts_with_to_dot([&] { ad::to_dot(ad::constant(Array<double>{2.0})); }));
    auto loss = ad::sum(p * p);
    CHECK_FALSE(ad::to_dot(loss).empty());
    tape.clear();
    CHECK(starts_with_to_dot([&] { ad::to_dot(loss); }));  // recorded before the clear
    ad::Var<double> other_loss;
    {
        ad::Tape other;
        other_loss = ad::sum(p * p);
    }
    CHECK(starts_with_to_dot([&] { ad::to_dot(other_loss); }));  // recorded on another tape
}

TEST_CASE("to_dot: the graph can still be drawn after backward(), until the tape is cleared") {
    ad::Tape tape;
    HandGraph g;
    const std::string before = ad::to_dot(g.loss);
    g.loss.backward();
    const std::string after = ad::to_dot(g.loss);
    std::set<std::string> before_ids, after_ids;
    for (const auto& node : dot_nodes(before)) before_ids.insert(node.first);
    for (const auto& node : dot_nodes(after)) after_ids.insert(node.first);
    CHECK(before_ids.size() == 6);
    CHECK(after_ids == before_ids);
    CHECK(dot_edges(after) == dot_edges(before));
    tape.clear();
    CHECK_THROWS_AS(ad::to_dot(g.loss), ad::tape_error);
}

TEST_CASE("to_dot: show_call_sites labels annotated records with the file and line of the user's call") {
    ad::Tape tape{{.annotate = true}};
    auto x = ad::param(Array<double>{1.0, 2.0});
    const int line = __LINE__ + 1;
    auto loss = ad::sum(ad::exp(x));
    ad::DotOptions options;
    options.show_call_sites = true;
    const auto nodes = dot_nodes(ad::to_dot(loss, options));
    const std::string here = "at graph_test.cpp:" + std::to_string(line);
    INFO(nodes.at("r0"));
    CHECK(nodes.at("r0").find(here) != std::string::npos);
    CHECK(nodes.at("r1").find(here) != std::string::npos);
    CHECK(ad::to_dot(loss).find("graph_test.cpp") == std::string::npos);  // not asked for
}

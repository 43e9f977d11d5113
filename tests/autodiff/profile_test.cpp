// The profiler (autodiff/profile.hpp): its counts equal the records of a
// known step, its outputs parse, and it is off outside its scope.

#include <map>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/test_support.hpp"

namespace ad {
namespace {

/// One step of a small two-layer network: the ops it records are known.
template <class T>
Var<T> step(const Var<T>& w1, const Var<T>& w2, const Var<T>& x) {
    Var<T> h = tanh(matmul(x, w1));
    return sum(square(matmul(h, w2)));
}

std::map<std::string, std::size_t> records_per_op(const Tape& tape) {
    std::map<std::string, std::size_t> counts;
    for (std::size_t i = 0; i < tape.size(); ++i) ++counts[tape.op_name(i)];
    return counts;
}

const Profile::Row* find_row(const std::vector<Profile::Row>& rows, const std::string& name) {
    for (const auto& row : rows) {
        if (row.name == name) return &row;
    }
    return nullptr;
}

}  // namespace

TEST_CASE_TEMPLATE("the profiler counts one forward call and one VJP per record of a step", T, float, double) {
    Var<T> w1 = param<T>(Array<T>(test::uniform({3, 4}, 1)));
    Var<T> w2 = param<T>(Array<T>(test::uniform({4, 2}, 2)));
    Var<T> x = constant<T>(Array<T>(test::uniform({5, 3}, 3)));
    Tape tape;
    Profile profile;
    for (int s = 0; s < 3; ++s) {
        tape.clear();
        step(w1, w2, x).backward();
    }
    profile.stop();
    const auto rows = profile.rows();
    const auto recorded = records_per_op(tape);  // the last step's records
    std::size_t ops = 0;
    for (const auto& row : rows) {
        REQUIRE_FALSE(row.range);
        INFO(row.name);
        REQUIRE(recorded.count(row.name) == 1);
        CHECK(row.count == 3 * recorded.at(row.name));
        // Every record is reached by the sweep; the ops its VJPs run are its
        // backward time, not forward calls of their own.
        CHECK(row.backward_count == 3 * recorded.at(row.name));
        CHECK(row.forward_us >= 0);
        CHECK(row.backward_us >= 0);
        ops += row.count;
    }
    CHECK(rows.size() == recorded.size());
    CHECK(ops == 3 * tape.size());
    const Profile::Row* matmul = find_row(rows, "matmul");
    REQUIRE(matmul != nullptr);
    CHECK(matmul->bytes == 3 * (5 * 4 + 5 * 2) * sizeof(T));  // the values the two products made, three times
    for (std::size_t i = 1; i < rows.size(); ++i) CHECK(rows[i - 1].total_us() >= rows[i].total_us());
    CHECK(profile.wall_us() > 0);
    CHECK(detail::recording_state.observe == 0);
}

TEST_CASE("ops outside the profile's life, and on other threads' tapes, are not counted") {
    Var<double> w = param<double>({1.0, 2.0});
    Tape tape;
    sum(exp(w));  // before
    std::vector<Profile::Row> rows;
    {
        Profile profile;
        sum(sin(w)).backward();
        std::thread([] {
            Tape other;
            Var<double> v = param<double>({3.0});
            sum(cos(v)).backward();
        }).join();
        profile.stop();
        sum(log(w));  // after stop
        rows = profile.rows();
    }
    CHECK(find_row(rows, "exp") == nullptr);
    CHECK(find_row(rows, "log") == nullptr);
    CHECK(find_row(rows, "cos") == nullptr);
    REQUIRE(find_row(rows, "sin") != nullptr);
    CHECK(find_row(rows, "sin")->count == 1);
}

TEST_CASE("ranges mark code that is not ops and are listed after the ops") {
    Var<double> w = param<double>({1.0, 2.0});
    Tape tape;
    Profile profile;
    {
        ProfileRange range("load data");
        Array<double> busy = xt::zeros<double>({20000});
        for (int i = 0; i < 50; ++i) busy += 1.0;
        CHECK(busy(0) == 50);
    }
    {
        ProfileRange range(std::string("model"));
        sum(exp(w)).backward();
    }
    profile.stop();
    const auto rows = profile.rows();
    REQUIRE(rows.size() == 4);  // exp, sum, then the two ranges
    CHECK_FALSE(rows[0].range);
    CHECK_FALSE(rows[1].range);
    CHECK(rows[2].range);
    CHECK(rows[3].range);
    const Profile::Row* load = find_row(rows, "load data");
    const Profile::Row* model = find_row(rows, "model");
    REQUIRE(load);
    REQUIRE(model);
    CHECK(load->count == 1);
    // The range ended before exp: the loop's time is not charged to exp.
    CHECK(find_row(rows, "exp")->forward_us <= model->forward_us);
    const std::string table = profile.table();
    CHECK(table.find("load data") != std::string::npos);
    CHECK(table.find("ranges") != std::string::npos);
    CHECK(table.find("exp") < table.find("ranges"));
}

TEST_CASE("the profile's JSON and Chrome trace parse and agree with its rows") {
    Var<float> w = param<float>({1.0f, 2.0f, 3.0f});
    Tape tape;
    Profile profile;
    sum(square(w)).backward();
    profile.stop();
    const auto json = nlohmann::json::parse(profile.json());
    REQUIRE(json["rows"].size() == profile.rows().size());
    CHECK(json["rows"][0]["name"] == profile.rows()[0].name);
    CHECK(json["rows"][0]["count"] == 1);
    const auto trace = nlohmann::json::parse(profile.chrome_trace());
    REQUIRE(trace["traceEvents"].size() == profile.events().size());
    CHECK(profile.events().size() == 4);  // square and sum, forward and backward
    for (const auto& event : trace["traceEvents"]) {
        CHECK(event["ph"] == "X");
        CHECK(event["dur"].get<double>() >= 0);
    }
    CHECK_THROWS_AS(profile.write_chrome_trace("/nonexistent-folder/trace.json"), io_error);
}

TEST_CASE("under create_graph, the ops a VJP records are its backward time, not forward calls") {
    Tape tape;
    Var<double> x = param<double>({0.5, 1.5});
    Profile profile;
    Var<double> loss = sum(pow(x, 3.0));
    std::vector<Var<double>> g = grad(loss, {x}, {.create_graph = true});
    profile.stop();
    const auto rows = profile.rows();
    REQUIRE(find_row(rows, "pow") != nullptr);
    CHECK(find_row(rows, "pow")->count == 1);
    CHECK(find_row(rows, "pow")->backward_count == 1);
    CHECK(find_row(rows, "mul") == nullptr);  // recorded by pow's VJP
    CHECK(tape.size() > 2);
}

}  // namespace ad

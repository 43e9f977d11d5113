// Rank-0 checkpoints: saved by rank 0, loaded by rank 0 and broadcast, so that
// every rank ends with the saved state; failures are every rank's and change
// nothing.
#include "distributed_test_support.hpp"

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace {

using namespace ad;
namespace fs = std::filesystem;

/// A folder under the temporary directory, the same on every rank (rank 0's
/// pid names it, so that concurrent jobs do not collide); rank 0 removes it.
struct SharedFolder {
    fs::path path;
    explicit SharedFolder(const std::string& name) {
        std::string text = (fs::temp_directory_path() / ("tapegrad_dist_" + name + "_" + std::to_string(getpid()))).string();
        test::group().broadcast(text, 0);
        path = text;
        if (test::group().rank() == 0) fs::remove_all(path);
        test::group().barrier();
    }
    ~SharedFolder() {
        test::group().barrier();
        if (test::group().rank() == 0) fs::remove_all(path);
    }
};

/// A linear layer and a buffer: parameters and buffers both travel.
template <class T>
struct Net : nn::Module<T> {
    std::shared_ptr<nn::Linear<T>> fc;
    std::shared_ptr<Array<T>> seen;
    Net(std::size_t in, std::size_t out) {
        fc = this->register_module("fc", nn::Linear<T>(in, out, 3));
        seen = this->register_buffer("seen", xt::zeros<T>({out}));
    }
    Var<T> forward(const Var<T>& x) override { return (*fc)(x); }
};

/// Everything a training checkpoint holds, copied out.
template <class T>
struct Saved {
    std::vector<Array<T>> values;  // parameters, then the buffer
    std::vector<Array<T>> optimizer_state;
    std::size_t steps = 0;
    T rate = 0;
    std::size_t schedule_step = 0;

    Saved(const Net<T>& net, const nn::Optimizer<T>& optimizer, const nn::LRScheduler<T>& schedule)
        : steps(optimizer.steps()), rate(optimizer.learning_rate()), schedule_step(schedule.last_step()) {
        for (const auto& p : net.named_parameters()) values.push_back(p.var.value());
        values.push_back(*net.seen);
        for (const auto& s : optimizer.state_arrays()) optimizer_state.push_back(*s.second);
    }
    bool operator==(const Saved& o) const {
        return values == o.values && optimizer_state == o.optimizer_state && steps == o.steps && rate == o.rate &&
               schedule_step == o.schedule_step;
    }
};

/// Two Adam steps on fixed data: the same on every rank.
template <class T>
void train(Net<T>& net, nn::Optimizer<T>& optimizer, nn::LRScheduler<T>& schedule, int steps) {
    Array<T> x = {{1, 2}, {-1, 0.5}, {0.25, -3}};
    Array<T> y = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    for (int s = 0; s < steps; ++s) {
        Tape tape;
        optimizer.zero_grad();
        nn::mse(net(x), y).backward();
        optimizer.step();
        schedule.step();
        *net.seen += T(1);
    }
}

/// Each rank its own, different, values.
template <class T>
void perturb(Net<T>& net, int rank) {
    for (const auto& p : net.named_parameters()) p.var.mutable_value() += T(rank + 1);
    std::fill(net.seen->begin(), net.seen->end(), T(-rank));
}

TEST_CASE("dist::save_checkpoint / load_checkpoint: rank 0 saves, every rank loads rank 0's state") {
    dist::ProcessGroup& group = test::group();
    SharedFolder folder("checkpoint");
    Net<double> net(2, 3);
    nn::Adam<double> adam(net);
    nn::StepLR<double> schedule(adam, 2, 0.5);
    train(net, adam, schedule, 3);
    const Saved<double> saved(net, adam, schedule);
    REQUIRE(!saved.optimizer_state.empty());

    dist::save_checkpoint(group, folder.path / "ckpt", net, adam, 17, &schedule);
    if (group.rank() == 0) CHECK(fs::exists(folder.path / "ckpt" / "manifest.json"));

    // A new process on every rank: other values, a fresh optimizer and schedule.
    Net<double> other(2, 3);
    perturb(other, group.rank());
    nn::Adam<double> fresh(other);
    nn::StepLR<double> fresh_schedule(fresh, 2, 0.5);
    REQUIRE(!(Saved<double>(other, fresh, fresh_schedule) == saved));
    const std::size_t step = dist::load_checkpoint(group, folder.path / "ckpt", other, fresh, &fresh_schedule);
    CHECK(step == 17);
    CHECK(Saved<double>(other, fresh, fresh_schedule) == saved);
    CHECK(fresh.steps() == 3);
    CHECK(fresh_schedule.last_step() == 3);

    // The ranks go on in step: one more step gives every rank the same values.
    train(other, fresh, fresh_schedule, 1);
    for (const auto& p : other.named_parameters()) CHECK(test::same_on_every_rank(p.var.value()));
    for (const auto& s : fresh.state_arrays()) CHECK(test::same_on_every_rank(*s.second));
}

TEST_CASE("dist::load_checkpoint: a damaged file is an io_error on every rank, and no rank's model changes") {
    dist::ProcessGroup& group = test::group();
    SharedFolder folder("damaged");
    Net<double> net(2, 3);
    nn::Adam<double> adam(net);
    nn::StepLR<double> schedule(adam, 2, 0.5);
    train(net, adam, schedule, 2);
    dist::save_checkpoint(group, folder.path / "ckpt", net, adam, 5, &schedule);
    if (group.rank() == 0) {
        // One byte of the weights' data (the file's last byte) changed: its checksum no longer matches.
        std::fstream file(folder.path / "ckpt" / "fc.weight.npy", std::ios::in | std::ios::out | std::ios::binary);
        file.seekg(-1, std::ios::end);
        char byte = 0;
        file.get(byte);
        file.seekp(-1, std::ios::end);
        file.put(char(byte ^ 0x5a));
    }
    group.barrier();

    Net<double> other(2, 3);
    perturb(other, group.rank());
    nn::Adam<double> fresh(other);
    nn::StepLR<double> fresh_schedule(fresh, 2, 0.5);
    const Saved<double> before(other, fresh, fresh_schedule);
    std::string message;
    try {
        dist::load_checkpoint(group, folder.path / "ckpt", other, fresh, &fresh_schedule);
    } catch (const io_error& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.rfind("load_checkpoint: rank 0: ", 0) == 0);
    CHECK(message.find("fc.weight.npy") != std::string::npos);
    CHECK(message.find("checksum") != std::string::npos);
    CHECK(Saved<double>(other, fresh, fresh_schedule) == before);

    // A missing checkpoint: the same, with rank 0's reason.
    CHECK_THROWS_AS(dist::load_checkpoint(group, folder.path / "nothing here", other, fresh, &fresh_schedule), io_error);
    CHECK(Saved<double>(other, fresh, fresh_schedule) == before);
}

TEST_CASE("dist::load_checkpoint: a rank whose model differs from rank 0's fails every rank before rank 0 loads") {
    dist::ProcessGroup& group = test::group();
    if (group.size() < 2) return;
    SharedFolder folder("layout");
    Net<float> net(2, 3);
    nn::SGD<float> sgd(net);
    nn::StepLR<float> schedule(sgd, 2, 0.5);
    train(net, sgd, schedule, 1);
    dist::save_checkpoint(group, folder.path / "ckpt", net, sgd, 1, &schedule);

    const int last = group.size() - 1;
    Net<float> other(group.rank() == last ? 4 : 2, 3);  // the last rank's weight is (3, 4), not (3, 2)
    perturb(other, group.rank());
    nn::SGD<float> fresh(other);
    nn::StepLR<float> fresh_schedule(fresh, 2, 0.5);
    const Saved<float> before(other, fresh, fresh_schedule);
    const std::string expected = "load_checkpoint: rank " + std::to_string(last) +
                                 ": its model, optimizer or schedule differs from rank 0's: rank 0 has parameter "
                                 "'fc.weight' (3, 2) where rank " +
                                 std::to_string(last) + " has parameter 'fc.weight' (3, 4)";
    CHECK_THROWS_WITH_AS(dist::load_checkpoint(group, folder.path / "ckpt", other, fresh, &fresh_schedule),
                         expected.c_str(), io_error);
    CHECK(Saved<float>(other, fresh, fresh_schedule) == before);  // rank 0 included: it never loaded
}

TEST_CASE("dist::save_checkpoint / save_parameters: a save that fails on rank 0 is an io_error on every rank") {
    dist::ProcessGroup& group = test::group();
    SharedFolder folder("save_fails");
    if (group.rank() == 0) {
        fs::create_directories(folder.path);
        std::ofstream(folder.path / "a file") << "not a folder";
    }
    group.barrier();
    Net<double> net(2, 3);
    nn::SGD<double> sgd(net);
    std::string message;
    try {
        dist::save_checkpoint(group, folder.path / "a file", net, sgd, 0);
    } catch (const io_error& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.rfind("save_checkpoint: rank 0: ", 0) == 0);
    CHECK(message.size() > std::string("save_checkpoint: rank 0: ").size());
    CHECK_THROWS_AS(dist::save_parameters(group, net, folder.path / "a file"), io_error);
}

TEST_CASE("dist::save_parameters / load_parameters: every rank ends with the saved parameters and the same report") {
    dist::ProcessGroup& group = test::group();
    SharedFolder folder("parameters");
    Net<float> net(3, 2);
    *net.seen = Array<float>{4, 5};
    dist::save_parameters(group, net, folder.path / "params");

    Net<float> other(3, 2);
    perturb(other, group.rank());
    nn::LoadReport report = dist::load_parameters(group, other, folder.path / "params");
    CHECK(report.missing.empty());
    CHECK(report.unexpected.empty());
    CHECK(other.fc->weight().value() == net.fc->weight().value());
    CHECK(other.fc->bias().value() == net.fc->bias().value());
    CHECK(*other.seen == Array<float>{4, 5});

    // Not strict, into a model with one more parameter: rank 0's report on every rank.
    struct Wider : Net<float> {
        Var<float> extra;
        Wider() : Net<float>(3, 2) { extra = this->register_parameter("extra", Array<float>{1, 2}); }
    };
    Wider wider;
    wider.extra.mutable_value() = Array<float>{float(group.rank()), 0};
    nn::LoadOptions loose;
    loose.strict = false;
    report = dist::load_parameters(group, wider, folder.path / "params", loose);
    CHECK(report.missing == std::vector<std::string>{"extra (shape (2,))"});
    CHECK(report.unexpected.empty());
    CHECK(wider.extra.value() == Array<float>{0, 0});  // rank 0's, on every rank
    CHECK(wider.fc->weight().value() == net.fc->weight().value());

    // Strict: the same model is an io_error on every rank, nothing loaded.
    perturb(wider, group.rank());
    const auto before = wider.fc->weight().value();
    CHECK_THROWS_AS(dist::load_parameters(group, wider, folder.path / "params"), io_error);
    CHECK(wider.fc->weight().value() == before);
}

}  // namespace

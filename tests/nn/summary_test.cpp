#include "nn_test_support.hpp"

#include <string>
#include <vector>

namespace {

using namespace ad;

template <class T>
std::size_t elements(const Shape& shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

/// The row's line of the table: indent, path, description (leaf) or type.
std::string layer_cell(const nn::SummaryRow& row) {
    const std::string& what = row.leaf ? row.description : row.type;
    return std::string(2 * row.depth, ' ') + (row.path.empty() ? what : row.path + ": " + what);
}

/// The first line of `table` that starts with `start`, or "".
std::string line_starting(const std::string& table, const std::string& start) {
    std::size_t at = 0;
    while (at < table.size()) {
        std::size_t end = table.find('\n', at);
        std::string line = table.substr(at, end - at);
        if (line.rfind(start, 0) == 0) return line;
        at = end == std::string::npos ? table.size() : end + 1;
    }
    return "";
}

/// What a row should hold, computed by hand from the layers' sizes.
struct ExpectedRow {
    std::string path;
    std::size_t depth;
    Shape shape;
    std::size_t params;
    bool repeat = false;
};

void check_rows(const std::vector<nn::SummaryRow>& rows, const std::vector<ExpectedRow>& expected) {
    REQUIRE(rows.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CAPTURE(i);
        CHECK(rows[i].path == expected[i].path);
        CHECK(rows[i].depth == expected[i].depth);
        CHECK(rows[i].has_output);
        CHECK(rows[i].output_shape == expected[i].shape);
        CHECK(rows[i].params == expected[i].params);
        CHECK(rows[i].repeat == expected[i].repeat);
    }
}

/// A watcher that only proves it was put back.
template <class T>
struct NullWatcher final : nn::ModuleWatcher<T> {
    void returned(const nn::Module<T>&, const std::string&, std::size_t, const Var<T>&) override {}
};

TEST_CASE_TEMPLATE(
    "summary: a small CNN in a Sequential, rows, shapes, "
    "parameters, totals, table",
    T, float, double) {
    const long C = 1, O = 4, K = 3, H = 8, classes = 10, N = 2;
    const long conv_hw = H - K + 1, pool_hw = conv_hw / 2, flat = O * pool_hw * pool_hw;
    nn::Sequential<T> model(
        std::vector<nn::ModulePtr<T>>{std::make_shared<nn::Conv2d<T>>(C, O, Size2(K)), std::make_shared<nn::ReLU<T>>(),
                                      std::make_shared<nn::MaxPool2d<T>>(Size2(2)), std::make_shared<nn::Flatten<T>>(),
                                      std::make_shared<nn::Linear<T>>(flat, classes)});
    const Shape input{std::size_t(N), std::size_t(C), std::size_t(H), std::size_t(H)};
    nn::ModelSummary s = nn::summarize(model, input);

    const auto n = std::size_t(N);
    const std::vector<std::string> paths{"", "layers.0", "layers.1", "layers.2", "layers.3", "layers.4"};
    const std::vector<Shape> shapes{{n, std::size_t(classes)},
                                    {n, std::size_t(O), std::size_t(conv_hw), std::size_t(conv_hw)},
                                    {n, std::size_t(O), std::size_t(conv_hw), std::size_t(conv_hw)},
                                    {n, std::size_t(O), std::size_t(pool_hw), std::size_t(pool_hw)},
                                    {n, std::size_t(flat)},
                                    {n, std::size_t(classes)}};
    const std::size_t conv_params = std::size_t(O * C * K * K + O), fc_params = std::size_t(flat * classes + classes);
    const std::vector<std::size_t> params{0, conv_params, 0, 0, 0, fc_params};
    REQUIRE(s.rows.size() == paths.size());
    std::size_t leaf_outputs = 0;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        CAPTURE(i);
        const auto& row = s.rows[i];
        CHECK(row.path == paths[i]);
        CHECK(row.depth == (i == 0 ? 0u : 1u));
        CHECK(row.has_output);
        CHECK(row.output_shape == shapes[i]);
        CHECK(row.params == params[i]);
        CHECK(row.param_bytes == params[i] * sizeof(T));
        CHECK(row.leaf == (i != 0));
        CHECK_FALSE(row.repeat);
        if (i) leaf_outputs += elements<T>(shapes[i]) * sizeof(T);
    }
    CHECK(s.rows[0].type == "Sequential");
    CHECK(s.rows[1].description == model.layer(0)->describe());
    CHECK(s.rows[5].description == "Linear(36, 10)");
    CHECK(s.total_params == conv_params + fc_params);
    CHECK(s.total_params == model.parameter_count());
    CHECK(s.trainable_params == s.total_params);
    CHECK(s.param_bytes == s.total_params * sizeof(T));
    CHECK(s.buffer_bytes == 0);
    CHECK(s.input_bytes == elements<T>(input) * sizeof(T));
    CHECK(s.output_bytes == leaf_outputs);
    CHECK(s.element_size == sizeof(T));

    // The printed table: a line per row with its shape and count, then the
    // totals.
    const std::string table = nn::summary(model, input);
    CHECK(table == s.table());
    for (const auto& row : s.rows) {
        CAPTURE(layer_cell(row));
        std::string line = line_starting(table, layer_cell(row) + " ");
        REQUIRE_FALSE(line.empty());
        CHECK(line.find(shape_string(row.output_shape)) != std::string::npos);
        if (row.params) CHECK(line.find(" " + std::to_string(row.params) + " ") != std::string::npos);
    }
    CHECK(table.find("layers.0: Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))") != std::string::npos);
    CHECK(table.find("Total params: " + std::to_string(model.parameter_count()) + "\n") != std::string::npos);
    CHECK(table.find("Trainable params: " + std::to_string(model.parameter_count()) + "\n") != std::string::npos);
    CHECK(table.find("Non-trainable params: 0\n") != std::string::npos);
    // Leaf outputs: conv and relu 2*4*6*6 each, pool 2*4*3*3, flatten 2*36, fc
    // 2*10: 740 scalars, twice.
    CHECK(2 * leaf_outputs == 2 * 740 * sizeof(T));
    CHECK(table.find(std::string("Forward/backward pass size: ") + (sizeof(T) == 4 ? "5,920" : "11,840") + " bytes") !=
          std::string::npos);
    CHECK(ad::detail::recording_state.observe == 0);
}

TEST_CASE("summary: an MLP's fused Linear and Sigmoid appear as two rows") {
    nn::MLP<double> model({3, 5, 2});  // Linear, Sigmoid, Linear, Sigmoid: fused pairs in training
    nn::ModelSummary s = nn::summarize(model, {4, 3});
    REQUIRE(s.rows.size() == 5);
    CHECK(s.rows[1].path == "layers.0");
    CHECK(s.rows[2].path == "layers.1");
    CHECK(s.rows[2].type == "Sigmoid");
    CHECK(s.rows[2].output_shape == Shape{4, 5});
    CHECK(s.rows[4].output_shape == Shape{4, 2});
    CHECK(s.rows[3].params == 5 * 2 + 2);
}

/// A user module whose children are called through operator(); a block
/// inside it; a shared activation called twice; a parameter tied between fc
/// and `tied`.
template <class T>
struct Tied final : nn::Module<T> {
    explicit Tied(const Var<T>& weight) { w = this->register_parameter("weight", weight); }
    Var<T> forward(const Var<T>& x) override { return matmul(x, w, false, true); }
    Var<T> w;
};

template <class T>
struct Block final : nn::Module<T> {
    std::shared_ptr<nn::Linear<T>> fc = this->register_module("fc", nn::Linear<T>(4, 6));
    std::shared_ptr<nn::BatchNorm1d<T>> norm = this->register_module("norm", nn::BatchNorm1d<T>(6));
    Var<T> forward(const Var<T>& x) override { return (*norm)((*fc)(x)); }
};

template <class T>
struct Net final : nn::Module<T> {
    std::shared_ptr<nn::Linear<T>> fc = this->register_module("fc", nn::Linear<T>(4, 4));
    std::shared_ptr<nn::ReLU<T>> act = this->register_module("act", nn::ReLU<T>());
    std::shared_ptr<Tied<T>> tied = this->register_module("tied", Tied<T>(fc->weight()));
    std::shared_ptr<Block<T>> block = this->register_module("block", Block<T>());
    std::shared_ptr<nn::Dropout<T>> drop = this->register_module("drop", nn::Dropout<T>(0.5));
    Var<T> forward(const Var<T>& x) override {
        Var<T> h = (*act)((*fc)(x));
        h = (*act)((*tied)(h));
        return (*drop)((*block)(h));
    }
};

TEST_CASE_TEMPLATE(
    "summary: a user module's children by dotted name, shared "
    "and tied, mode and buffers",
    T, float, double) {
    Net<T> model;
    model.train();
    model.block->norm->eval();  // a frozen norm inside a training model keeps its own mode
    const Array<T> mean_before = *model.block->norm->named_buffers()[0].value;
    nn::ModelSummary s = nn::summarize(model, {3, 4});

    check_rows(s.rows, {{"", 0, {3, 6}, 0, false},
                        {"fc", 1, {3, 4}, 4 * 4 + 4, false},
                        {"act", 1, {3, 4}, 0, false},
                        {"tied", 1, {3, 4}, 4 * 4, false},
                        {"act", 1, {3, 4}, 0, true},
                        {"block", 1, {3, 6}, 0, false},
                        {"block.fc", 2, {3, 6}, 4 * 6 + 6, false},
                        {"block.norm", 2, {3, 6}, 6 + 6, false},
                        {"drop", 1, {3, 6}, 0, false}});
    CHECK(s.rows[0].type == "Net");
    CHECK(s.rows[5].type == "Block");
    // The tied weight counts once: fc's 20 and block's 42; tied adds nothing.
    CHECK(s.total_params == 4 * 4 + 4 + 4 * 6 + 6 + 6 + 6);
    CHECK(s.total_params == model.parameter_count());
    std::size_t buffers = 0;
    for (const auto& b : model.named_buffers()) buffers += b.value->size();
    CHECK(buffers == 6 + 6 + 1);
    CHECK(s.buffer_bytes == buffers * sizeof(T));

    const std::string table = s.table();
    CHECK(table.find("\n  block: Block ") != std::string::npos);
    CHECK(table.find("\n    block.fc: Linear(4, 6) ") != std::string::npos);
    CHECK(line_starting(table, "  act: ReLU ").find("--") != std::string::npos);

    // Evaluation mode inside (batch norm kept its running statistics), each
    // module's own mode after.
    CHECK(xt::all(xt::equal(*model.block->norm->named_buffers()[0].value, mean_before)));
    CHECK(model.is_training());
    CHECK(model.drop->is_training());
    CHECK(model.block->fc->is_training());
    CHECK_FALSE(model.block->norm->is_training());

    model.eval();
    nn::summarize(model, {3, 4});
    CHECK_FALSE(model.is_training());
    CHECK_FALSE(model.drop->is_training());
}

/// Calls its attention through Module::call for the AttentionOutput (not a Var).
template <class T>
struct AttentionNet final : nn::Module<T> {
    std::shared_ptr<nn::MultiheadAttention<T>> attn =
        this->register_module("attn", nn::MultiheadAttention<T>(nn::MultiheadAttentionOptions(4, 2)));
    std::shared_ptr<nn::Linear<T>> fc = this->register_module("fc", nn::Linear<T>(4, 3));
    Var<T> forward(const Var<T>& x) override {
        nn::AttentionOutput<T> out = attn->call([&] { return attn->forward(x, x, x); });
        return (*fc)(reshape(out.output, {-1, 4}));
    }
};

TEST_CASE("summary: a call returning something other than a Var is a row without a shape, its children under it") {
    AttentionNet<double> model;
    nn::ModelSummary s = nn::summarize(model, {5, 2, 4});
    REQUIRE(s.rows.size() == 4);
    CHECK(s.rows[1].path == "attn");
    CHECK(s.rows[1].depth == 1);
    CHECK_FALSE(s.rows[1].has_output);
    CHECK(s.rows[1].params == 3 * 4 * 4 + 3 * 4);
    CHECK(s.rows[2].path == "attn.out_proj");
    CHECK(s.rows[2].depth == 2);
    CHECK(s.rows[2].output_shape == Shape{10, 4});
    CHECK(s.rows[3].path == "fc");
    CHECK(s.rows[3].depth == 1);
    CHECK(s.rows[3].output_shape == Shape{10, 3});
    const std::string line = line_starting(s.table(), "  attn: MultiheadAttention ");
    REQUIRE_FALSE(line.empty());
    CHECK(line.find(" -- ") != std::string::npos);
}

TEST_CASE_TEMPLATE("summary: a transformer encoder layer's calls, shapes and parameters", T, float, double) {
    const long d = 8, heads = 2, ff = 16;
    const std::size_t L = 5, N = 2, D = std::size_t(d), F = std::size_t(ff);
    nn::TransformerEncoderLayer<T> layer(nn::TransformerEncoderLayerOptions(d, heads).dim_feedforward(ff));
    nn::ModelSummary s = nn::summarize(layer, {L, N, D});

    const std::size_t attention = 3 * D * D + 3 * D, out_proj = D * D + D, linear1 = D * F + F, linear2 = F * D + D,
                      norm = 2 * D;
    check_rows(s.rows, {{"", 0, {L, N, D}, 0},
                        {"self_attn", 1, {L, N, D}, attention},
                        {"self_attn.out_proj", 2, {L * N, D}, out_proj},
                        {"dropout1", 1, {L, N, D}, 0},
                        {"norm1", 1, {L, N, D}, norm},
                        {"linear1", 1, {L * N, F}, linear1},
                        {"dropout", 1, {L * N, F}, 0},
                        {"linear2", 1, {L * N, D}, linear2},
                        {"dropout2", 1, {L, N, D}, 0},
                        {"norm2", 1, {L, N, D}, norm}});
    CHECK(s.rows[0].type == "TransformerEncoderLayer");
    CHECK(s.total_params == attention + out_proj + linear1 + linear2 + 2 * norm);
    CHECK(s.total_params == layer.parameter_count());
    const std::string table = s.table();
    CHECK(table.find("\n  self_attn: MultiheadAttention ") != std::string::npos);
    CHECK(table.find("\n    self_attn.out_proj: Linear(8, 8) ") != std::string::npos);
    CHECK(table.find("Total params: " + std::to_string(layer.parameter_count()) + "\n") != std::string::npos);
    CHECK(layer.is_training());
}

TEST_CASE_TEMPLATE(
    "summary: a wrong input shape throws the layer's "
    "shape_error and restores everything",
    T, float, double) {
    NullWatcher<T> mine;
    REQUIRE(nn::watch_modules<T>(&mine) == nullptr);
    nn::Sequential<T> model(std::vector<nn::ModulePtr<T>>{std::make_shared<nn::Conv2d<T>>(3, 4, Size2(3)),
                                                          std::make_shared<nn::ReLU<T>>()});
    model.train();
    const std::size_t tape_size = Tape::current() ? Tape::current()->size() : 0;
    CHECK_THROWS_WITH_AS(nn::summarize(model, {2, 1, 8, 8}),
                         doctest::Contains("layers.0 (Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1))): "
                                           "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1)): input has shape"),
                         shape_error);
    CHECK(ad::detail::recording_state.observe == 0);
    CHECK(ad::detail::current_scope() == nullptr);
    CHECK(model.is_training());
    CHECK(model.layer(0)->is_training());
    CHECK((Tape::current() ? Tape::current()->size() : 0) == tape_size);
    // The watcher set before the summary is back.
    CHECK(nn::watch_modules<T>(nullptr) == &mine);

    Net<T> net;
    CHECK_THROWS_WITH_AS(nn::summary(net, {3, 5}), doctest::Contains("Linear(4, 4): "), shape_error);
    CHECK(ad::detail::recording_state.observe == 0);
    CHECK(nn::watch_modules<T>(nullptr) == nullptr);
    // A summary works again afterwards.
    CHECK(nn::summarize(net, {3, 4}).rows.size() == 9);
}

}  // namespace

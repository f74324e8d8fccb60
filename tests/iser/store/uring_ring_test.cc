// UringRing on its own: binding to the loop, overflow order, resubmission, batching and
// the inline fallback when io_uring cannot be used.
#include "iser/store/uring_ring.h"

#include <functional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/store/sparse_file_store.h"
#include "tests/iser/store/store_test_util.h"

namespace iser::store {
namespace {

// A NOP that records its completion order; `retries` times it asks to be resubmitted.
class NopOp : public UringRing::Op {
 public:
  NopOp(int id, std::vector<int>* order, int retries = 0)
      : id_(id), order_(order), retries_(retries) {}
  void Prepare(io_uring_sqe* sqe) override { io_uring_prep_nop(sqe); }
  bool Complete(int32_t res) override {
    EXPECT_EQ(res, 0);
    if (retries_-- > 0) return false;
    order_->push_back(id_);
    return true;
  }

 private:
  int id_;
  std::vector<int>* order_;
  int retries_;
};

std::unique_ptr<EventLoop> NewLoop() {
  auto loop = EventLoop::Create();
  EXPECT_TRUE(loop.ok());
  return std::move(*loop);
}

// Runs `body` on a fresh loop on this thread until `order` holds `want` entries.
void RunUntil(std::vector<int>* order, size_t want, absl::AnyInvocable<void(UringRing*)> body) {
  auto loop = NewLoop();
  EventLoop* l = loop.get();
  std::function<void()> poll = [l, order, want, &poll] {
    if (order->size() >= want) return l->Stop();
    l->RunAfter(absl::Milliseconds(1), [&poll] { poll(); });
  };
  l->Post([&] {
    UringRing* ring = UringRing::ForCurrentLoop();
    ASSERT_NE(ring, nullptr);
    body(ring);
    poll();
  });
  l->RunAfter(absl::Seconds(20), [l] { l->Stop(); });
  l->Run();
}

TEST(UringRingTest, NoLoopMeansNoRing) { EXPECT_EQ(UringRing::ForCurrentLoop(), nullptr); }

TEST(UringRingTest, OverflowKeepsOrderAndCompletesEachOnce) {
  constexpr int kOps = 1000;
  std::vector<int> order;
  RunUntil(&order, kOps, [&](UringRing* ring) {
    for (int i = 0; i < kOps; ++i) ring->Submit(std::make_unique<NopOp>(i, &order));
    EXPECT_EQ(ring->in_flight(), ring->depth());
    EXPECT_EQ(ring->queued(), kOps - ring->depth());
    EXPECT_TRUE(order.empty()) << "completions must not run inline";
  });
  ASSERT_EQ(order.size(), static_cast<size_t>(kOps));
  for (int i = 0; i < kOps; ++i) EXPECT_EQ(order[i], i);
}

TEST(UringRingTest, ResubmitsWhenAsked) {
  std::vector<int> order;
  RunUntil(&order, 2, [&](UringRing* ring) {
    ring->Submit(std::make_unique<NopOp>(1, &order, /*retries=*/3));
    ring->Submit(std::make_unique<NopOp>(2, &order));
  });
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

TEST(UringRingTest, PerIterationModeBatchesSubmissions) {
  std::vector<int> order;
  uint64_t calls = 0;
  RunUntil(&order, 100, [&](UringRing* ring) {
    ring->set_submit_mode(UringRing::SubmitMode::kPerIteration);
    uint64_t before = ring->submit_calls();
    for (int i = 0; i < 100; ++i) ring->Submit(std::make_unique<NopOp>(i, &order));
    EXPECT_EQ(ring->submit_calls(), before);  // nothing entered the kernel yet
    // Check after the loop iteration that all 100 went in one io_uring_enter.
    EventLoop::Current()->Post([ring, before, &calls] { calls = ring->submit_calls() - before; });
  });
  EXPECT_EQ(calls, 1u);
  std::vector<int> order2;
  RunUntil(&order2, 10, [&](UringRing* ring) {
    ring->set_submit_mode(UringRing::SubmitMode::kImmediate);
    uint64_t before = ring->submit_calls();
    for (int i = 0; i < 10; ++i) ring->Submit(std::make_unique<NopOp>(i, &order2));
    EXPECT_EQ(ring->submit_calls() - before, 10u);
  });
  EXPECT_EQ(order2.size(), 10u);
}

// Loops come and go on one thread (often at the same address); the ring follows.
TEST(UringRingTest, FollowsSuccessiveLoopsOnOneThread) {
  UringRing* first = nullptr;
  for (int round = 0; round < 5; ++round) {
    std::vector<int> order;
    RunUntil(&order, 3, [&](UringRing* ring) {
      if (first == nullptr) first = ring;
      EXPECT_EQ(ring, first) << "one ring per thread";
      for (int i = 0; i < 3; ++i) ring->Submit(std::make_unique<NopOp>(i, &order));
    });
    EXPECT_EQ(order.size(), 3u) << "round " << round;
  }
}

TEST(UringRingTest, EachThreadHasItsOwnRing) {
  UringRing* here = nullptr;
  std::vector<int> order;
  RunUntil(&order, 1, [&](UringRing* ring) {
    here = ring;
    ring->Submit(std::make_unique<NopOp>(0, &order));
  });
  UringRing* there = nullptr;
  std::thread t([&] {
    std::vector<int> o;
    RunUntil(&o, 1, [&](UringRing* ring) {
      there = ring;
      ring->Submit(std::make_unique<NopOp>(0, &o));
    });
  });
  t.join();
  EXPECT_NE(here, nullptr);
  EXPECT_NE(there, nullptr);
  EXPECT_NE(here, there);
}

// When io_uring cannot be set up the store completes inline even on a running loop.
TEST(UringRingTest, SetupFailureFallsBackToInline) {
  testing::TempDir dir;
  SparseFileStore::Options o;
  o.size_bytes = 1 << 20;
  auto store = SparseFileStore::Open(dir.File("lun"), o);
  ASSERT_TRUE(store.ok());
  std::thread t([&] {  // a fresh thread: no ring yet
    UringRing::DisableForTesting(true);
    auto loop = NewLoop();
    EventLoop* l = loop.get();
    l->Post([&] {
      EXPECT_EQ(UringRing::ForCurrentLoop(), nullptr);
      EXPECT_FALSE((*store)->UsesIoUring());
      auto data = testing::Pattern(4096, 1);
      bool done = false;
      (*store)->Write(0, data, true, [&](absl::Status s) {
        EXPECT_TRUE(s.ok()) << s;
        done = true;
      });
      EXPECT_TRUE(done) << "fallback completes inline";
      std::vector<uint8_t> back(4096);
      done = false;
      (*store)->Read(0, back, [&](absl::Status s) { done = s.ok(); });
      EXPECT_TRUE(done);
      EXPECT_EQ(back, data);
      l->Stop();
    });
    l->Run();
    UringRing::DisableForTesting(false);
  });
  t.join();
}

TEST(UringRingTest, OptionForcesInlineOnALoop) {
  testing::TempDir dir;
  SparseFileStore::Options o;
  o.size_bytes = 1 << 20;
  o.use_io_uring = false;
  auto store = SparseFileStore::Open(dir.File("lun"), o);
  ASSERT_TRUE(store.ok());
  testing::RunOn(testing::IoPath::kIoUring, [&](std::function<void()> finish) {
    EXPECT_FALSE((*store)->UsesIoUring());
    bool done = false;
    (*store)->Flush([&](absl::Status s) { done = s.ok(); });
    EXPECT_TRUE(done);
    finish();
  });
}

}  // namespace
}  // namespace iser::store

// LunBackend (node/attach) over the real initiator against an in-process target: the
// BlockBackend contract (geometry, LBPRZ, calls from many threads, completions, errors).
#include "node/attach/lun_backend.h"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "iser/initiator/sync_initiator.h"
#include "node/attach/attachment_record.h"
#include "node/exposure/exposure.h"
#include "tests/iser/initiator/initiator_test_util.h"

namespace iser::node {
namespace {

using initiator::testing::InProcessTarget;
using initiator::testing::kLunBytes;

class LunBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto init = initiator::SyncInitiator::Connect(target_.Config());
    ASSERT_TRUE(init.ok()) << init.status();
    init_ = std::move(*init);
    auto lun = init_->OpenLun(0);
    ASSERT_TRUE(lun.ok()) << lun.status();
    auto backend = LunBackend::Create(init_->loop(), *lun);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }
  void TearDown() override {
    backend_.reset();
    init_.reset();
  }

  InProcessTarget target_;
  std::unique_ptr<initiator::SyncInitiator> init_;
  std::unique_ptr<LunBackend> backend_;
};

TEST_F(LunBackendTest, GeometryAndLbprz) {
  EXPECT_EQ(backend_->size_bytes(), kLunBytes);
  EXPECT_EQ(backend_->block_size(), 512u);
  // The in-memory store is thin: the target reports LBPME and LBPRZ.
  EXPECT_TRUE(backend_->thin_provisioned());
  EXPECT_TRUE(backend_->discard_zeroes());
}

TEST_F(LunBackendTest, ConcurrentWritesFromManyThreadsReadBack) {
  constexpr int kThreads = 8, kPerThread = 32;
  constexpr size_t kBs = 4096;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        uint64_t slot = static_cast<uint64_t>(t) * kPerThread + i;
        std::vector<uint8_t> buf(kBs, static_cast<uint8_t>(slot * 7 + 1));
        absl::Status s = WaitForCompletion(
            [&](IoCompletion done) { backend_->Write(slot * kBs, buf, std::move(done)); });
        if (!s.ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (uint64_t slot = 0; slot < kThreads * kPerThread; ++slot) {
    std::vector<uint8_t> got(kBs);
    ASSERT_TRUE(WaitForCompletion([&](IoCompletion done) {
                  backend_->Read(slot * kBs, got, std::move(done));
                }).ok());
    ASSERT_EQ(got, std::vector<uint8_t>(kBs, static_cast<uint8_t>(slot * 7 + 1))) << slot;
  }
  EXPECT_TRUE(WaitForCompletion([&](IoCompletion done) { backend_->Flush(std::move(done)); }).ok());
}

TEST_F(LunBackendTest, LargeTransferSplitAndDiscardReadsZeroes) {
  std::vector<uint8_t> big(6 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 31 + (i >> 12));
  ASSERT_TRUE(WaitForCompletion([&](IoCompletion done) {
                backend_->Write(1 << 20, big, std::move(done));
              }).ok());
  std::vector<uint8_t> got(big.size());
  ASSERT_TRUE(WaitForCompletion([&](IoCompletion done) {
                backend_->Read(1 << 20, got, std::move(done));
              }).ok());
  EXPECT_EQ(got, big);
  ASSERT_TRUE(WaitForCompletion([&](IoCompletion done) {
                backend_->Discard(2 << 20, 1 << 20, std::move(done));
              }).ok());
  std::vector<uint8_t> hole(1 << 20, 0xff);
  ASSERT_TRUE(WaitForCompletion([&](IoCompletion done) {
                backend_->Read(2 << 20, hole, std::move(done));
              }).ok());
  EXPECT_EQ(hole, std::vector<uint8_t>(1 << 20, 0));
  // Outside the discarded range the data is intact.
  std::vector<uint8_t> after(4096);
  ASSERT_TRUE(WaitForCompletion([&](IoCompletion done) {
                backend_->Read(3 << 20, after, std::move(done));
              }).ok());
  EXPECT_EQ(0, std::memcmp(after.data(), big.data() + (2 << 20), after.size()));
}

TEST_F(LunBackendTest, ErrorsComeBackAsStatuses) {
  std::vector<uint8_t> buf(4096);
  absl::Status s = WaitForCompletion(
      [&](IoCompletion done) { backend_->Read(kLunBytes, buf, std::move(done)); });
  EXPECT_FALSE(s.ok());
  s = WaitForCompletion([&](IoCompletion done) { backend_->Discard(100, 512, std::move(done)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LunBackendTest, SurvivesAConnectionDropWithWritesInFlight) {
  constexpr int kN = 64;
  std::vector<std::vector<uint8_t>> bufs(kN, std::vector<uint8_t>(8192));
  std::atomic<int> done_ok{0}, done_all{0};
  for (int i = 0; i < kN; ++i) {
    std::fill(bufs[i].begin(), bufs[i].end(), static_cast<uint8_t>(i + 1));
    backend_->Write(static_cast<uint64_t>(i) * 8192, bufs[i], [&](absl::Status s) {
      if (s.ok()) ++done_ok;
      ++done_all;
    });
    if (i == kN / 2) target_.DropConnections();
  }
  for (int i = 0; i < 1000 && done_all.load() < kN; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(done_all.load(), kN);
  EXPECT_EQ(done_ok.load(), kN);
  for (int i = 0; i < kN; ++i) {
    std::vector<uint8_t> got(8192);
    ASSERT_TRUE(WaitForCompletion([&](IoCompletion done) {
                  backend_->Read(static_cast<uint64_t>(i) * 8192, got, std::move(done));
                }).ok());
    ASSERT_EQ(got, bufs[i]) << i;
  }
}

TEST(AttachmentRecordTest, JsonRoundTrip) {
  AttachmentRecord r;
  r.device = "/dev/loop7";
  r.portal = "127.0.0.1:3260";
  r.target = "iqn.2026-11.org.iser-csi:\"quoted\"\\x";
  r.lun = 3;
  r.pid = 4242;
  r.size_bytes = 1ull << 40;
  r.block_size = 4096;
  r.isid = "80123456789a";
  r.tsih = 9;
  r.fuse_mount_dir = "/tmp/iser-fuse-abc";
  r.fuse_file = "/tmp/iser-fuse-abc/lun";
  r.fuse_connection = 57;
  r.fuse_fd = 8;
  r.loop_fd = 14;
  r.started = "2026-11-25T15:00:00Z";
  auto back = AttachmentRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), r.ToJson());
  EXPECT_EQ(back->target, r.target);
  EXPECT_EQ(back->size_bytes, r.size_bytes);
  EXPECT_FALSE(AttachmentRecord::FromJson("{\"portal\": \"x\"}").ok());
  EXPECT_FALSE(AttachmentRecord::FromJson("not json").ok());
  EXPECT_EQ(RecordPath("/run/x", "/dev/loop7"), "/run/x/loop7.json");
}

}  // namespace
}  // namespace iser::node

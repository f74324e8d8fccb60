// Data path through LunHandle against the in-process target: sizes, concurrency
// beyond the CmdSN window, unmap, flush, capacity change, task management.
#include <atomic>
#include <future>

#include "gtest/gtest.h"
#include "iser/initiator/sync_initiator.h"
#include "tests/iser/initiator/initiator_test_util.h"

namespace iser::initiator {
namespace {

using testing::InProcessTarget;
using testing::Pattern;

class InitiatorIo : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ini = SyncInitiator::Connect(target_.Config());
    ASSERT_TRUE(ini.ok()) << ini.status();
    ini_ = std::move(*ini);
    auto lun = ini_->OpenLun(0);
    ASSERT_TRUE(lun.ok()) << lun.status();
    lun_ = *lun;
  }
  InProcessTarget target_;
  std::unique_ptr<SyncInitiator> ini_;
  LunHandle* lun_ = nullptr;
};

TEST_F(InitiatorIo, RoundTripsOfManySizes) {
  // Up to 3 MiB: beyond FirstBurstLength (256 KiB) and MaxBurstLength (1 MiB), so the
  // write needs several R2Ts and the read several Data-In sequences.
  uint64_t lba = 0;
  int seed = 1;
  for (size_t bytes : {512ul, 4096ul, 8192ul + 512, 65536ul, 262144ul, 262144ul + 4096, 1048576ul,
                       1048576ul + 512, 3145728ul}) {
    std::vector<uint8_t> data = Pattern(bytes, seed++);
    ASSERT_TRUE(ini_->Write(lun_, lba, data).ok()) << bytes;
    // The target's store has exactly these bytes.
    ASSERT_EQ(0, std::memcmp(target_.store().data().data() + lba * 512, data.data(), bytes))
        << bytes;
    std::vector<uint8_t> back(bytes);
    ASSERT_TRUE(ini_->Read(lun_, lba, back).ok()) << bytes;
    EXPECT_EQ(back, data) << bytes;
    lba += bytes / 512 + 1;
  }
}

TEST_F(InitiatorIo, LargeTransfersSplitAcrossCommands) {
  lun_->set_max_transfer_bytes(128 << 10);
  std::vector<uint8_t> data = Pattern(1 << 20, 42);
  ASSERT_TRUE(ini_->Write(lun_, 100, data).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(ini_->Read(lun_, 100, back).ok());
  EXPECT_EQ(back, data);
}

TEST_F(InitiatorIo, RejectsBadRanges) {
  std::vector<uint8_t> odd(100);
  EXPECT_EQ(ini_->Write(lun_, 0, odd).code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> block(512);
  EXPECT_EQ(ini_->Read(lun_, lun_->num_blocks(), block).code(), absl::StatusCode::kOutOfRange);
}

TEST_F(InitiatorIo, ManyConcurrentCommandsBeyondTheWindow) {
  constexpr int kCount = 256;  // the target's window is 128: the rest queue locally
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < kCount; ++i) bufs.push_back(Pattern(4096, 1000 + i));
  std::promise<void> all_done;
  std::atomic<int> done{0}, failed{0};
  size_t peak = 0;
  ini_->RunOnLoop([&] {
    for (int i = 0; i < kCount; ++i) {
      lun_->Write(static_cast<uint64_t>(i) * 8, bufs[i], [&](absl::Status s) {
        if (!s.ok()) ++failed;
        if (++done == kCount) all_done.set_value();
      });
    }
    peak = ini_->session()->outstanding();
  });
  all_done.get_future().get();
  EXPECT_EQ(peak, static_cast<size_t>(kCount));
  EXPECT_EQ(failed, 0);
  // Read them all back concurrently too.
  std::vector<std::vector<uint8_t>> back(kCount, std::vector<uint8_t>(4096));
  std::promise<void> reads_done;
  done = 0;
  ini_->RunOnLoop([&] {
    for (int i = 0; i < kCount; ++i) {
      lun_->Read(static_cast<uint64_t>(i) * 8, back[i], [&](absl::Status s) {
        if (!s.ok()) ++failed;
        if (++done == kCount) reads_done.set_value();
      });
    }
  });
  reads_done.get_future().get();
  EXPECT_EQ(failed, 0);
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(back[i], bufs[i]) << i;
}

TEST_F(InitiatorIo, UnmapZeroesAndFlushReachesTheStore) {
  std::vector<uint8_t> data = Pattern(64 << 10, 7);
  ASSERT_TRUE(ini_->Write(lun_, 256, data).ok());
  int flushes = 0;
  target_.Run([&] { flushes = target_.store().flushes; });
  ASSERT_TRUE(ini_->Flush(lun_).ok());
  int flushes_after = 0;
  target_.Run([&] { flushes_after = target_.store().flushes; });
  EXPECT_GT(flushes_after, flushes);
  EXPECT_TRUE(lun_->thin_provisioned());
  ASSERT_TRUE(ini_->Unmap(lun_, 256, 64).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(ini_->Read(lun_, 256, back).ok());
  EXPECT_TRUE(std::all_of(back.begin(), back.begin() + 32768, [](uint8_t b) { return b == 0; }));
  EXPECT_TRUE(std::equal(back.begin() + 32768, back.end(), data.begin() + 32768));
}

TEST_F(InitiatorIo, CapacityChangeIsNoticed) {
  target_.Run([&] {
    ASSERT_TRUE(target_.target().FindNode(testing::kIqn)->device->Resize(0, 64 << 20).ok());
  });
  // The next command sees CAPACITY DATA HAS CHANGED, is retried, and the capacity is
  // re-read.
  std::vector<uint8_t> block(512);
  ASSERT_TRUE(ini_->Read(lun_, 0, block).ok());
  uint64_t capacity = 0;
  for (int i = 0; i < 100 && capacity != (64u << 20); ++i) {
    ini_->RunOnLoop([&] { capacity = lun_->capacity_bytes(); });
    if (capacity != (64u << 20)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(capacity, 64u << 20);
  // The new space is usable.
  std::vector<uint8_t> data = Pattern(4096, 9);
  ASSERT_TRUE(ini_->Write(lun_, (48 << 20) / 512, data).ok());
}

TEST_F(InitiatorIo, LunResetAnswered) {
  absl::StatusOr<pdu::TmfResponse> rsp = absl::UnknownError("unset");
  ASSERT_TRUE(ini_->Wait([&](IoCallback done) {
                    ini_->session()->TaskManagement(pdu::TmfFunction::kLogicalUnitReset, 0, 0,
                                                    [&, done = std::move(done)](auto r) mutable {
                                                      rsp = r;
                                                      done(absl::OkStatus());
                                                    });
                  })
                  .ok());
  ASSERT_TRUE(rsp.ok()) << rsp.status();
  EXPECT_EQ(*rsp, pdu::TmfResponse::kComplete);
  // I/O continues after the reset (its unit attention is retried away).
  std::vector<uint8_t> block(512);
  EXPECT_TRUE(ini_->Read(lun_, 0, block).ok());
}

TEST_F(InitiatorIo, CommandTimeoutAbortsTheTask) {
  target_.Run([&] { target_.store().set_async(true); });  // the store never completes
  std::vector<uint8_t> block(4096);
  ScsiCommand c;
  c.cdb[0] = 0x88;
  c.cdb[13] = 8;  // 8 blocks
  c.read = block;
  c.timeout = absl::Milliseconds(200);
  std::promise<absl::StatusOr<ScsiResult>> result;
  std::atomic<int> calls{0};
  ini_->RunOnLoop([&] {
    ini_->session()->Submit(c, [&](absl::StatusOr<ScsiResult> r) {
      if (++calls == 1) result.set_value(r);
    });
  });
  // The timeout sends ABORT TASK; the target answers it once the stuck store operation
  // is out of the way.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  target_.Run([&] {
    target_.store().set_async(false);
    target_.store().RunPending();
  });
  auto f = result.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  absl::StatusOr<ScsiResult> r = f.get();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(calls, 1);
  // The session is still usable.
  EXPECT_TRUE(ini_->Read(lun_, 0, block).ok());
}

}  // namespace
}  // namespace iser::initiator

namespace iser::initiator {
namespace {

// A stingy target: tiny window, no immediate or unsolicited data, small bursts and
// segments, one R2T at a time. Everything must still work, within its limits (a command
// beyond MaxCmdSN or a segment beyond MaxRecvDataSegmentLength would be refused).
TEST(InitiatorIoStingyTarget, RespectsEveryLimit) {
  testing::TargetSetup setup;
  setup.options.queue_depth = 4;
  setup.options.offer.immediate_data = false;
  setup.options.offer.initial_r2t = true;
  setup.options.offer.max_burst_length = 64 << 10;
  setup.options.offer.first_burst_length = 16 << 10;
  setup.options.offer.max_outstanding_r2t = 1;
  setup.options.offer.target_max_recv_dsl = 8192;
  testing::InProcessTarget target(setup);
  auto ini = SyncInitiator::Connect(target.Config());
  ASSERT_TRUE(ini.ok()) << ini.status();
  const login::OperationalParams& p = (*ini)->session()->params();
  EXPECT_FALSE(p.immediate_data);
  EXPECT_TRUE(p.initial_r2t);
  EXPECT_EQ(p.target_max_recv_dsl, 8192u);
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  for (size_t bytes : {512ul, 8192ul, 8192ul + 512, 65536ul + 4096, 1048576ul}) {
    std::vector<uint8_t> data = Pattern(bytes, bytes);
    ASSERT_TRUE((*ini)->Write(*lun, 64, data).ok()) << bytes;
    std::vector<uint8_t> back(bytes);
    ASSERT_TRUE((*ini)->Read(*lun, 64, back).ok()) << bytes;
    ASSERT_EQ(back, data) << bytes;
  }
  // 64 commands through a window of 4.
  constexpr int kCount = 64;
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < kCount; ++i) bufs.push_back(Pattern(32768, 300 + i));
  std::promise<void> all;
  std::atomic<int> done{0}, failed{0};
  (*ini)->RunOnLoop([&] {
    for (int i = 0; i < kCount; ++i) {
      (*lun)->Write(4096 + i * 64, bufs[i], [&](absl::Status s) {
        if (!s.ok()) ++failed;
        if (++done == kCount) all.set_value();
      });
    }
  });
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(failed, 0);
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(0, std::memcmp(target.store().data().data() + (4096 + i * 64) * 512, bufs[i].data(),
                             bufs[i].size()))
        << i;
  }
}

}  // namespace
}  // namespace iser::initiator

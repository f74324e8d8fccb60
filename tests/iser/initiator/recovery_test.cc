// Recovery: the connection dies (or the target goes away) in the middle of a stream of
// verified writes; every write completes exactly once and reads back right, and after
// the replacement timeout outstanding commands fail with an I/O error.
#include <atomic>
#include <future>
#include <map>

#include "gtest/gtest.h"
#include "iser/initiator/sync_initiator.h"
#include "tests/iser/initiator/initiator_test_util.h"

namespace iser::initiator {
namespace {

using testing::InProcessTarget;
using testing::Pattern;
using testing::WriteStream;

TEST(InitiatorRecovery, TargetKillsConnectionsMidStream) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.reconnect_backoff_initial = absl::Milliseconds(20);
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  WriteStream ws{ini->get(), *lun};
  ws.Start();
  // Kill the connection three times while writes are in flight.
  for (int kill = 1; kill <= 3; ++kill) {
    while (ws.acked < kill * ws.total / 4)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    target.DropConnections();
  }
  ws.Verify();  // every write completed once, well, and reads back right
  uint64_t reconnects = 0;
  (*ini)->RunOnLoop([&] { reconnects = (*ini)->session()->reconnects(); });
  EXPECT_GE(reconnects, 1u);
}

TEST(InitiatorRecovery, TargetRestartsMidStream) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.reconnect_backoff_initial = absl::Milliseconds(20);
  c.reconnect_backoff_max = absl::Milliseconds(100);
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  WriteStream ws{ini->get(), *lun};
  ws.Start();
  while (ws.acked < ws.total / 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  target.Restart();
  ASSERT_EQ(ws.finished.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  uint64_t reconnects = 0;
  (*ini)->RunOnLoop([&] { reconnects = (*ini)->session()->reconnects(); });
  EXPECT_GE(reconnects, 1u);
  for (int i = 0; i < ws.total; ++i) {
    ASSERT_EQ(ws.completions[i], 1) << i;
    ASSERT_TRUE(ws.status[i].ok()) << i << ": " << ws.status[i];
    std::vector<uint8_t> back(ws.bytes);
    ASSERT_TRUE((*ini)->Read(*lun, static_cast<uint64_t>(i) * (ws.bytes / 512), back).ok());
    ASSERT_EQ(back, ws.data[i]) << i;
  }
}

TEST(InitiatorRecovery, AnswersTargetPings) {
  testing::TargetSetup setup;
  setup.options.nop_interval = absl::Milliseconds(50);
  setup.options.nop_timeout = absl::Milliseconds(300);
  InProcessTarget target(setup);
  SessionConfig c = target.Config();
  c.nop_interval = absl::ZeroDuration();  // only the target pings
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  uint64_t reconnects = 0;
  (*ini)->RunOnLoop([&] { reconnects = (*ini)->session()->reconnects(); });
  EXPECT_EQ(reconnects, 0u);  // had we not answered, the target would have dropped us
  std::vector<uint8_t> block(4096);
  EXPECT_TRUE((*ini)->Read(*lun, 0, block).ok());
}

TEST(InitiatorRecovery, UnansweredPingReconnects) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.nop_interval = absl::Milliseconds(100);
  c.nop_timeout = absl::Milliseconds(200);
  c.reconnect_backoff_initial = absl::Milliseconds(20);
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  // The target hangs (its loop is stuck) with the TCP connection still open.
  target.loop()->Post([] { std::this_thread::sleep_for(std::chrono::milliseconds(800)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  uint64_t reconnects = 0;
  (*ini)->RunOnLoop([&] { reconnects = (*ini)->session()->reconnects(); });
  EXPECT_GE(reconnects, 1u);
  std::vector<uint8_t> block(4096);
  EXPECT_TRUE((*ini)->Read(*lun, 0, block).ok());
}

TEST(InitiatorRecovery, InitiatorSideDropMidStream) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.reconnect_backoff_initial = absl::Milliseconds(20);
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  WriteStream ws{ini->get(), *lun};
  ws.bytes = 1 << 20;  // several R2Ts per write when the drop hits
  ws.total = 30;       // 30 MiB of the 32 MiB LUN
  ws.depth = 8;
  ws.Start();
  while (ws.acked < ws.total / 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  (*ini)->RunOnLoop([&] { (*ini)->session()->DropConnection(); });
  ASSERT_EQ(ws.finished.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  for (int i = 0; i < ws.total; ++i) {
    ASSERT_EQ(ws.completions[i], 1) << i;
    ASSERT_TRUE(ws.status[i].ok()) << i << ": " << ws.status[i];
    ASSERT_EQ(0,
              std::memcmp(target.store().data().data() + i * ws.bytes, ws.data[i].data(), ws.bytes))
        << i;
  }
}

TEST(InitiatorRecovery, TargetAwayBrieflyThenBack) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.reconnect_backoff_initial = absl::Milliseconds(20);
  c.reconnect_backoff_max = absl::Milliseconds(100);
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  target.StopListening();
  target.DropConnections();
  // Writes issued while the target is away wait, then complete once it is back.
  std::vector<uint8_t> data = Pattern(128 << 10, 77);
  std::promise<absl::Status> p;
  (*ini)->RunOnLoop([&] { (*lun)->Write(2048, data, [&](absl::Status s) { p.set_value(s); }); });
  auto f = p.get_future();
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  target.Relisten();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_TRUE(f.get().ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE((*ini)->Read(*lun, 2048, back).ok());
  EXPECT_EQ(back, data);
}

TEST(InitiatorRecovery, ReplacementTimeoutFailsOutstandingWithIoError) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.reconnect_backoff_initial = absl::Milliseconds(20);
  c.reconnect_backoff_max = absl::Milliseconds(100);
  c.replacement_timeout = absl::Milliseconds(500);
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  target.StopListening();
  target.DropConnections();
  std::vector<uint8_t> data = Pattern(4096, 3);
  std::atomic<int> calls{0};
  std::promise<absl::Status> p;
  (*ini)->RunOnLoop([&] {
    (*lun)->Write(0, data, [&](absl::Status s) {
      if (++calls == 1) p.set_value(s);
    });
  });
  auto f = p.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  absl::Status s = f.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  // New I/O fails fast while still disconnected...
  EXPECT_EQ((*ini)->Write(*lun, 0, data).code(), absl::StatusCode::kUnavailable);
  // ...and works again once the target is back.
  target.Relisten();
  absl::Status again;
  for (int i = 0; i < 100; ++i) {
    again = (*ini)->Write(*lun, 0, data);
    if (again.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(again.ok()) << again;
  EXPECT_EQ(calls, 1);
}

TEST(InitiatorRecovery, IdlePingsAnsweredNoReconnect) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.nop_interval = absl::Milliseconds(100);
  c.nop_timeout = absl::Milliseconds(200);
  c.reconnect_backoff_initial = absl::Milliseconds(20);
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  // Idle pings are answered: no reconnect.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  uint64_t reconnects = 0;
  (*ini)->RunOnLoop([&] { reconnects = (*ini)->session()->reconnects(); });
  EXPECT_EQ(reconnects, 0u);
}

}  // namespace
}  // namespace iser::initiator

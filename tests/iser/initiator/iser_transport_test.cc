// The initiator's session code over iSER (software iWARP on loopback) against the
// embedded target's portal: the same data path tests as over TCP, the write-data modes
// (immediate, unsolicited, solicited by RDMA Read), recovery, a TCP and an iSER session
// on one port at once, and the auto choice with and without an iSER-capable portal.
#include <atomic>
#include <future>

#include "gtest/gtest.h"
#include "iser/initiator/sync_initiator.h"
#include "tests/iser/initiator/initiator_test_util.h"

namespace iser::initiator {
namespace {

using iser_transport::PortalTransport;
using testing::InProcessTarget;
using testing::Pattern;
using testing::TargetSetup;
using transport::TransportChoice;

TargetSetup PortalSetup(PortalTransport t = PortalTransport::kAny) {
  TargetSetup s;
  s.portal = t;
  return s;
}

struct Connected {
  std::unique_ptr<SyncInitiator> ini;
  LunHandle* lun = nullptr;
};

Connected ConnectTo(const SessionConfig& c) {
  Connected out;
  auto ini = SyncInitiator::Connect(c);
  EXPECT_TRUE(ini.ok()) << ini.status();
  if (!ini.ok()) return out;
  out.ini = std::move(*ini);
  auto lun = out.ini->OpenLun(0);
  EXPECT_TRUE(lun.ok()) << lun.status();
  if (lun.ok()) out.lun = *lun;
  return out;
}

// Connects over iSER proposing these ImmediateData/InitialR2T values; `negotiated` gets
// what the login settled.
Connected ConnectOverIser(InProcessTarget& target, bool immediate_data, bool initial_r2t,
                          login::OperationalParams* negotiated) {
  SessionConfig cfg = target.Config(TransportChoice::kIser);
  cfg.immediate_data = immediate_data;
  cfg.initial_r2t = initial_r2t;
  Connected c = ConnectTo(cfg);
  if (c.ini) c.ini->RunOnLoop([&] { *negotiated = c.ini->session()->params(); });
  return c;
}

std::string TransportOf(SyncInitiator* ini) {
  std::string name;
  ini->RunOnLoop([&] { name = ini->session()->transport_name(); });
  return name;
}

// Write then read back sizes from one block to 3 MiB (several RDMA Reads and Writes per
// command past MaxBurstLength), checking the target's store directly.
void RoundTrips(InProcessTarget& target, SyncInitiator* ini, LunHandle* lun) {
  uint64_t lba = 0;
  int seed = 1;
  for (size_t bytes : {512ul, 4096ul, 8192ul + 512, 65536ul, 262144ul, 262144ul + 4096,
                       1048576ul + 512, 3145728ul}) {
    std::vector<uint8_t> data = Pattern(bytes, seed++);
    ASSERT_TRUE(ini->Write(lun, lba, data).ok()) << bytes;
    ASSERT_EQ(0, std::memcmp(target.store().data().data() + lba * 512, data.data(), bytes))
        << bytes;
    std::vector<uint8_t> back(bytes);
    ASSERT_TRUE(ini->Read(lun, lba, back).ok()) << bytes;
    ASSERT_EQ(back, data) << bytes;
    lba += bytes / 512 + 1;
  }
}

TEST(InitiatorOverIser, LogsInWithRdmaExtensionsAndRoundTrips) {
  InProcessTarget target(PortalSetup());
  Connected c = ConnectTo(target.Config(TransportChoice::kIser));
  ASSERT_NE(c.lun, nullptr);
  EXPECT_EQ(TransportOf(c.ini.get()), "iser");
  login::OperationalParams p;
  c.ini->RunOnLoop([&] { p = c.ini->session()->params(); });
  EXPECT_TRUE(p.rdma_extensions);
  EXPECT_FALSE(p.header_digest);
  EXPECT_EQ(p.target_max_outstanding_unexpected_pdus,
            iser_transport::IserConnectionOptions().recv_depth);
  RoundTrips(target, c.ini.get(), c.lun);
  EXPECT_EQ(target.iser_portal()->iser_accepted(), 1u);
  EXPECT_EQ(target.iser_portal()->tcp_accepted(), 0u);
}

// Every combination of ImmediateData and InitialR2T moves the same bytes.
TEST(InitiatorOverIser, WriteDataModes) {
  for (bool immediate : {true, false}) {
    for (bool initial_r2t : {true, false}) {
      InProcessTarget target(PortalSetup());
      login::OperationalParams p;
      Connected c = ConnectOverIser(target, immediate, initial_r2t, &p);
      ASSERT_NE(c.lun, nullptr);
      EXPECT_EQ(p.immediate_data, immediate);
      EXPECT_EQ(p.initial_r2t, initial_r2t);
      SCOPED_TRACE(::testing::Message()
                   << "ImmediateData=" << immediate << " InitialR2T=" << initial_r2t);
      RoundTrips(target, c.ini.get(), c.lun);
    }
  }
}

// ImmediateData=Yes over iSER: a write that fits the target's receive buffer goes whole
// in the command's Send (the target adopts the buffer: no copy); a longer one sends no
// immediate data and is RDMA-read whole into the task buffer, instead of 16 KiB copied
// out of a receive buffer plus an RDMA Read of the rest.
TEST(InitiatorOverIser, OnlyWholeWritesGoAsImmediateData) {
  InProcessTarget target(PortalSetup());
  login::OperationalParams p;
  Connected c = ConnectOverIser(target, /*immediate_data=*/true, /*initial_r2t=*/false, &p);
  ASSERT_NE(c.lun, nullptr);
  ASSERT_TRUE(p.immediate_data);
  ASSERT_GE(p.first_burst_length, p.target_recv_dsl);
  struct Case {
    size_t bytes;
    uint64_t handed_over;  // receive buffers the target handed to a task
  };
  uint64_t lba = 0;
  int seed = 7;
  for (Case k : {Case{4096, 1}, Case{p.target_recv_dsl, 1}, Case{p.target_recv_dsl + 512, 0},
                 Case{128 << 10, 0}}) {
    uint64_t before = target.iser_portal()->immediate_buffers_handed_over();
    std::vector<uint8_t> data = Pattern(k.bytes, seed++);
    ASSERT_TRUE(c.ini->Write(c.lun, lba, data).ok()) << k.bytes;
    EXPECT_EQ(target.iser_portal()->immediate_buffers_handed_over() - before, k.handed_over)
        << k.bytes;
    EXPECT_EQ(0, std::memcmp(target.store().data().data() + lba * 512, data.data(), k.bytes))
        << k.bytes;
    lba += k.bytes / 512 + 1;
  }
}

TEST(InitiatorOverIser, ManyConcurrentCommandsStayWithinTheTargetsCredits) {
  InProcessTarget target(PortalSetup());
  SessionConfig cfg = target.Config(TransportChoice::kIser);
  cfg.initial_r2t = false;  // 64 KiB writes: each a Send without data, then an RDMA Read
  Connected c = ConnectTo(cfg);
  ASSERT_NE(c.lun, nullptr);
  testing::ConcurrentWritesThenReads(target, c.ini.get(), c.lun, 256, 64 << 10, 300);
}

TEST(InitiatorOverIser, ConnectionKilledMidStreamLosesNoWrite) {
  InProcessTarget target(PortalSetup());
  SessionConfig cfg = target.Config(TransportChoice::kIser);
  cfg.reconnect_backoff_initial = absl::Milliseconds(20);
  Connected c = ConnectTo(cfg);
  ASSERT_NE(c.lun, nullptr);
  testing::WriteStream ws{c.ini.get(), c.lun};
  ws.total = 300;
  ws.Start();
  for (int kill = 1; kill <= 3; ++kill) {
    while (ws.acked < kill * ws.total / 4)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    target.DropConnections();
  }
  ws.Verify();
  uint64_t reconnects = 0;
  std::string name;
  c.ini->RunOnLoop([&] {
    reconnects = c.ini->session()->reconnects();
    name = c.ini->session()->transport_name();
  });
  EXPECT_GE(reconnects, 1u);
  EXPECT_EQ(name, "iser");
}

TEST(InitiatorOverIser, TcpAndIserSessionsShareOnePort) {
  InProcessTarget target(PortalSetup());
  SessionConfig iser_cfg = target.Config(TransportChoice::kIser);
  iser_cfg.isid = 0x23d000000101ULL;
  SessionConfig tcp_cfg = target.Config(TransportChoice::kTcp);
  tcp_cfg.isid = 0x23d000000102ULL;
  Connected a = ConnectTo(iser_cfg);
  Connected b = ConnectTo(tcp_cfg);
  ASSERT_NE(a.lun, nullptr);
  ASSERT_NE(b.lun, nullptr);
  EXPECT_EQ(TransportOf(a.ini.get()), "iser");
  EXPECT_EQ(TransportOf(b.ini.get()), "tcp");
  // Both write interleaved ranges at once; each reads the other's data.
  constexpr size_t kBytes = 256 << 10;
  std::vector<uint8_t> da = Pattern(kBytes, 1), db = Pattern(kBytes, 2);
  std::thread ta([&] {
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(a.ini->Write(a.lun, 0, da).ok());
  });
  std::thread tb([&] {
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(b.ini->Write(b.lun, 1024, db).ok());
  });
  ta.join();
  tb.join();
  std::vector<uint8_t> back(kBytes);
  ASSERT_TRUE(a.ini->Read(a.lun, 1024, back).ok());
  EXPECT_EQ(back, db);
  ASSERT_TRUE(b.ini->Read(b.lun, 0, back).ok());
  EXPECT_EQ(back, da);
  EXPECT_EQ(target.iser_portal()->iser_accepted(), 1u);
  EXPECT_EQ(target.iser_portal()->tcp_accepted(), 1u);
}

TEST(InitiatorOverIser, AutoPrefersIser) {
  InProcessTarget target(PortalSetup());
  Connected c = ConnectTo(target.Config(TransportChoice::kAuto));
  ASSERT_NE(c.lun, nullptr);
  EXPECT_EQ(TransportOf(c.ini.get()), "iser");
}

TEST(InitiatorOverIser, AutoFallsBackToTcpWhenThePortalRefusesIser) {
  InProcessTarget target(PortalSetup(PortalTransport::kTcp));
  Connected c = ConnectTo(target.Config(TransportChoice::kAuto));
  ASSERT_NE(c.lun, nullptr);
  EXPECT_EQ(TransportOf(c.ini.get()), "tcp");
  std::vector<uint8_t> data = Pattern(8192, 5), back(8192);
  ASSERT_TRUE(c.ini->Write(c.lun, 8, data).ok());
  ASSERT_TRUE(c.ini->Read(c.lun, 8, back).ok());
  EXPECT_EQ(back, data);
}

TEST(InitiatorOverIser, IserOnlyChoiceFailsClearlyAgainstATcpOnlyPortal) {
  InProcessTarget target(PortalSetup(PortalTransport::kTcp));
  SessionConfig cfg = target.Config(TransportChoice::kIser);
  cfg.connect_timeout = absl::Seconds(3);
  auto ini = SyncInitiator::Connect(cfg);
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().code(), absl::StatusCode::kUnavailable) << ini.status();
  EXPECT_NE(ini.status().message().find("iSER"), std::string::npos) << ini.status();
}

}  // namespace
}  // namespace iser::initiator

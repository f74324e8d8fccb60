// Login, discovery, CHAP and the clear errors an attach must give.
#include "gtest/gtest.h"
#include "iser/initiator/sync_initiator.h"
#include "tests/iser/initiator/initiator_test_util.h"

namespace iser::initiator {
namespace {

using testing::InProcessTarget;
using testing::kIqn;
using testing::TargetSetup;

TEST(InitiatorLogin, LogsInAndReadsCapacity) {
  InProcessTarget target;
  auto ini = SyncInitiator::Connect(target.Config());
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  EXPECT_EQ((*lun)->block_size(), 512u);
  EXPECT_EQ((*lun)->capacity_bytes(), testing::kLunBytes);
  // Offered large values and unsolicited data; the target's limits apply.
  const login::OperationalParams& p = (*ini)->session()->params();
  EXPECT_TRUE(p.immediate_data);
  EXPECT_FALSE(p.initial_r2t);
  EXPECT_EQ(p.initiator_max_recv_dsl, 256u << 10);
  EXPECT_EQ(p.max_burst_length, 1u << 20);
  EXPECT_TRUE((*ini)->Logout().ok());
}

TEST(InitiatorLogin, DiscoveryListsTheTarget) {
  InProcessTarget target;
  auto targets = SyncInitiator::Discover(target.Config());
  ASSERT_TRUE(targets.ok()) << targets.status();
  ASSERT_EQ(targets->size(), 1u);
  EXPECT_EQ((*targets)[0].name, kIqn);
}

TEST(InitiatorLogin, WrongIqnIsNotFound) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  c.target_name = "iqn.2026-11.org.iser-csi:nope";
  auto ini = SyncInitiator::Connect(c);
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().code(), absl::StatusCode::kNotFound) << ini.status();
}

TEST(InitiatorLogin, NonexistentLunIsNotFound) {
  InProcessTarget target;
  auto ini = SyncInitiator::Connect(target.Config());
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(7);
  ASSERT_FALSE(lun.ok());
  EXPECT_EQ(lun.status().code(), absl::StatusCode::kNotFound) << lun.status();
  EXPECT_NE(lun.status().message().find("LUN 7"), std::string::npos) << lun.status();
}

TEST(InitiatorLogin, UnreachablePortalIsUnavailable) {
  InProcessTarget target;
  SessionConfig c = target.Config();
  target.StopListening();
  auto ini = SyncInitiator::Connect(c);
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().code(), absl::StatusCode::kUnavailable) << ini.status();
}

TargetSetup ChapSetup(bool mutual) {
  TargetSetup s;
  s.chap = {"node-a", "secret-of-node-a"};
  if (mutual) s.mutual_chap = {"target-x", "secret-of-target"};
  return s;
}

TEST(InitiatorLogin, ChapGoodSecret) {
  InProcessTarget target(ChapSetup(false));
  SessionConfig c = target.Config();
  c.chap = {"node-a", "secret-of-node-a"};
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  EXPECT_TRUE((*ini)->OpenLun(0).ok());
}

TEST(InitiatorLogin, ChapBadSecretIsUnauthenticated) {
  InProcessTarget target(ChapSetup(false));
  SessionConfig c = target.Config();
  c.chap = {"node-a", "wrong-secret-000"};
  auto ini = SyncInitiator::Connect(c);
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().code(), absl::StatusCode::kUnauthenticated) << ini.status();
}

TEST(InitiatorLogin, ChapMissingCredentialsRefused) {
  InProcessTarget target(ChapSetup(false));
  auto ini = SyncInitiator::Connect(target.Config());
  ASSERT_FALSE(ini.ok());
  EXPECT_NE(ini.status().code(), absl::StatusCode::kOk);
}

TEST(InitiatorLogin, MutualChapGood) {
  InProcessTarget target(ChapSetup(true));
  SessionConfig c = target.Config();
  c.chap = {"node-a", "secret-of-node-a"};
  c.mutual_chap = {"target-x", "secret-of-target"};
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
}

TEST(InitiatorLogin, MutualChapWrongTargetSecretIsUnauthenticated) {
  InProcessTarget target(ChapSetup(true));
  SessionConfig c = target.Config();
  c.chap = {"node-a", "secret-of-node-a"};
  c.mutual_chap = {"target-x", "not-the-target-secret"};
  auto ini = SyncInitiator::Connect(c);
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().code(), absl::StatusCode::kUnauthenticated) << ini.status();
}

TEST(InitiatorLogin, DigestsNegotiatedAndUsed) {
  TargetSetup setup;
  setup.options.offer.header_digest = true;
  setup.options.offer.data_digest = true;
  InProcessTarget target(setup);
  SessionConfig c = target.Config();
  c.header_digest = true;
  c.data_digest = true;
  auto ini = SyncInitiator::Connect(c);
  ASSERT_TRUE(ini.ok()) << ini.status();
  EXPECT_TRUE((*ini)->session()->params().header_digest);
  EXPECT_TRUE((*ini)->session()->params().data_digest);
  auto lun = (*ini)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
  std::vector<uint8_t> data = testing::Pattern(300 << 10, 5);
  ASSERT_TRUE((*ini)->Write(*lun, 8, data).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE((*ini)->Read(*lun, 8, back).ok());
  EXPECT_EQ(back, data);
}

TEST(SessionState, SerializesAndParses) {
  InProcessTarget target;
  auto ini = SyncInitiator::Connect(target.Config());
  ASSERT_TRUE(ini.ok()) << ini.status();
  SessionState s;
  (*ini)->RunOnLoop([&] { s = (*ini)->session()->state(); });
  EXPECT_NE(s.isid, 0u);
  EXPECT_NE(s.tsih, 0u);
  auto parsed = SessionState::Parse(s.Serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Serialize(), s.Serialize());
  EXPECT_EQ(parsed->isid, s.isid);
  EXPECT_EQ(parsed->params.max_burst_length, s.params.max_burst_length);
  EXPECT_FALSE(SessionState::Parse("portal=x\nbogus=1\n").ok());

  // A new "process" takes the session over from the state, with the same ISID (the
  // first one is gone; two live sessions with one ISID would keep reinstating each other).
  ini->reset();
  SessionConfig c = parsed->ToConfig();
  c.transport_factory = transport::TcpTransportFactory();
  auto second = SyncInitiator::Connect(c);
  ASSERT_TRUE(second.ok()) << second.status();
  SessionState s2;
  (*second)->RunOnLoop([&] { s2 = (*second)->session()->state(); });
  EXPECT_EQ(s2.isid, s.isid);
  size_t sessions = 0;
  for (int i = 0; i < 100; ++i) {
    target.Run([&] { sessions = target.target().session_count(); });
    if (sessions == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(sessions, 1u);
  auto lun = (*second)->OpenLun(0);
  ASSERT_TRUE(lun.ok()) << lun.status();
}

}  // namespace
}  // namespace iser::initiator

// Multiple connections per session (MC/S), over iSCSI/TCP and over iSER: the extra
// connections log in to the same session, commands go out round robin and keep their
// allegiance (R2T/Data-Out over TCP, RDMA over iSER), a lost connection recovers the
// whole session without losing or doubling a write, and a target that allows one
// connection gets one.
#include <atomic>
#include <future>

#include "gtest/gtest.h"
#include "iser/initiator/sync_initiator.h"
#include "tests/iser/initiator/initiator_test_util.h"

namespace iser::initiator {
namespace {

using iser_transport::PortalTransport;
using testing::ConcurrentWritesThenReads;
using testing::InProcessTarget;
using testing::Pattern;
using testing::TargetSetup;
using transport::TransportChoice;

struct Transport {
  const char* name;
  TransportChoice choice;
  bool portal;  // through an iSER portal (TCP and iSER on one port) or a plain listener
};

class MultiConnection : public ::testing::TestWithParam<Transport> {
 protected:
  static TargetSetup Setup(uint32_t max_connections = 8) {
    TargetSetup s;
    if (GetParam().portal) s.portal = PortalTransport::kAny;
    s.options.offer.max_connections = max_connections;
    return s;
  }
  SessionConfig Config(InProcessTarget& target, uint32_t connections) {
    SessionConfig c = target.Config(GetParam().choice);
    c.connections = connections;
    c.reconnect_backoff_initial = absl::Milliseconds(20);
    return c;
  }
  static std::unique_ptr<SyncInitiator> Connect(const SessionConfig& c, LunHandle** lun) {
    auto ini = SyncInitiator::Connect(c);
    EXPECT_TRUE(ini.ok()) << ini.status();
    if (!ini.ok()) return nullptr;
    auto l = (*ini)->OpenLun(0);
    EXPECT_TRUE(l.ok()) << l.status();
    *lun = l.ok() ? *l : nullptr;
    return std::move(*ini);
  }
  static size_t Connections(SyncInitiator* ini) {
    size_t n = 0;
    ini->RunOnLoop([&] { n = ini->session()->connection_count(); });
    return n;
  }
  static std::vector<uint64_t> PerConnection(SyncInitiator* ini) {
    std::vector<uint64_t> v;
    ini->RunOnLoop([&] { v = ini->session()->commands_per_connection(); });
    return v;
  }
  static size_t TargetConnections(InProcessTarget& target) {
    size_t n = 0;
    target.Run([&] { n = target.target().connection_count(); });
    return n;
  }
};

TEST_P(MultiConnection, TwoConnectionsShareTheCommands) {
  InProcessTarget target(Setup());
  LunHandle* lun = nullptr;
  auto ini = Connect(Config(target, 2), &lun);
  ASSERT_NE(lun, nullptr);
  EXPECT_EQ(Connections(ini.get()), 2u);
  EXPECT_EQ(TargetConnections(target), 2u);  // one session, two connections
  login::OperationalParams p;
  std::string transport;
  ini->RunOnLoop([&] {
    p = ini->session()->params();
    transport = ini->session()->transport_name();
  });
  EXPECT_EQ(p.max_connections, 2u);
  EXPECT_EQ(transport, GetParam().choice == TransportChoice::kIser ? "iser" : "tcp");
  ConcurrentWritesThenReads(target, ini.get(), lun, 128, 64 << 10, 100);
  std::vector<uint64_t> per = PerConnection(ini.get());
  ASSERT_EQ(per.size(), 2u);
  EXPECT_GE(per[0], 100u);  // round robin: both carry about half
  EXPECT_GE(per[1], 100u);
  EXPECT_TRUE(ini->Logout().ok());
}

// Write data leaves by every path (immediate, unsolicited, solicited by R2T or RDMA
// Read) on the connection that carries the command.
TEST_P(MultiConnection, EveryWriteDataModeKeepsAllegiance) {
  for (bool immediate : {true, false}) {
    for (bool initial_r2t : {true, false}) {
      SCOPED_TRACE(::testing::Message()
                   << "ImmediateData=" << immediate << " InitialR2T=" << initial_r2t);
      InProcessTarget target(Setup());
      SessionConfig cfg = Config(target, 2);
      cfg.immediate_data = immediate;
      cfg.initial_r2t = initial_r2t;
      LunHandle* lun = nullptr;
      auto ini = Connect(cfg, &lun);
      ASSERT_NE(lun, nullptr);
      ASSERT_EQ(Connections(ini.get()), 2u);
      ConcurrentWritesThenReads(target, ini.get(), lun, 32, 512 << 10, 7);
    }
  }
}

TEST_P(MultiConnection, LostConnectionRecoversTheSessionWithoutLosingWrites) {
  InProcessTarget target(Setup());
  LunHandle* lun = nullptr;
  auto ini = Connect(Config(target, 2), &lun);
  ASSERT_NE(lun, nullptr);
  testing::WriteStream ws{ini.get(), lun};
  ws.total = 300;
  ws.Start();
  // First the extra connection fails (from the initiator's side), then the target drops
  // everything; each time the session comes back with both connections.
  while (ws.acked < ws.total / 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ini->RunOnLoop([&] { ini->session()->DropConnection(1); });
  while (ws.acked < 2 * ws.total / 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  target.DropConnections();
  ws.Verify();
  uint64_t reconnects = 0;
  ini->RunOnLoop([&] { reconnects = ini->session()->reconnects(); });
  EXPECT_GE(reconnects, 2u);
  for (int i = 0; i < 200 && Connections(ini.get()) != 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Connections(ini.get()), 2u);
  EXPECT_EQ(TargetConnections(target), 2u);
}

TEST_P(MultiConnection, TargetAllowingOneConnectionGetsOne) {
  InProcessTarget target(Setup(/*max_connections=*/1));
  LunHandle* lun = nullptr;
  auto ini = Connect(Config(target, 4), &lun);
  ASSERT_NE(lun, nullptr);
  EXPECT_EQ(Connections(ini.get()), 1u);
  EXPECT_EQ(TargetConnections(target), 1u);
  ConcurrentWritesThenReads(target, ini.get(), lun, 16, 64 << 10, 40);
}

TEST_P(MultiConnection, FourConnections) {
  InProcessTarget target(Setup());
  LunHandle* lun = nullptr;
  auto ini = Connect(Config(target, 4), &lun);
  ASSERT_NE(lun, nullptr);
  EXPECT_EQ(Connections(ini.get()), 4u);
  ConcurrentWritesThenReads(target, ini.get(), lun, 64, 128 << 10, 70);
  for (uint64_t n : PerConnection(ini.get())) EXPECT_GE(n, 20u);
}

INSTANTIATE_TEST_SUITE_P(Transports, MultiConnection,
                         ::testing::Values(Transport{"tcp", TransportChoice::kTcp, false},
                                           Transport{"iser", TransportChoice::kIser, true}),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace iser::initiator

// InitiatorNegotiator against TargetNegotiator, PDU by PDU.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "iser/login/initiator_negotiator.h"
#include "iser/login/negotiation.h"
#include "iser/login/text_codec.h"
#include "tests/iser/login/login_test_util.h"

namespace iser::login {
namespace {

using testing::Keys;
using testing::kInitiator;
using testing::kTarget;
using testing::MakeTargetConfig;

struct Outcome {
  absl::Status status;
  int exchanges = 0;
  LoginResponse last;
  std::vector<InitiatorRequest> requests;
};

Outcome RunLogin(InitiatorNegotiator& ini, TargetNegotiator& tgt) {
  Outcome o;
  InitiatorRequest req = ini.Start();
  for (int i = 0; i < 40; ++i) {
    o.requests.push_back(req);
    LoginResponse resp = tgt.Step(LoginRequest{req.csg, req.nsg, req.transit, req.text});
    ++o.exchanges;
    o.last = resp;
    absl::StatusOr<std::optional<InitiatorRequest>> next = ini.OnResponse(resp);
    if (!next.ok()) {
      o.status = next.status();
      return o;
    }
    if (!next->has_value()) {
      EXPECT_TRUE(resp.full_feature);
      EXPECT_TRUE(ini.full_feature());
      return o;
    }
    req = **next;
  }
  o.status = absl::DeadlineExceededError("no convergence");
  return o;
}

InitiatorLoginConfig MakeInitiatorConfig() {
  InitiatorLoginConfig c;
  c.initiator_name = kInitiator;
  c.initiator_alias = "node1";
  c.target_name = kTarget;
  c.random_bytes = [counter = uint8_t{0x90}](uint8_t* out, size_t len) mutable {
    for (size_t i = 0; i < len; ++i) out[i] = counter++;
  };
  return c;
}

// Both sides must agree on every session-wide value.
void ExpectSameSessionParams(const OperationalParams& a, const OperationalParams& b) {
  EXPECT_EQ(a.header_digest, b.header_digest);
  EXPECT_EQ(a.data_digest, b.data_digest);
  EXPECT_EQ(a.max_connections, b.max_connections);
  EXPECT_EQ(a.initial_r2t, b.initial_r2t);
  EXPECT_EQ(a.immediate_data, b.immediate_data);
  EXPECT_EQ(a.max_burst_length, b.max_burst_length);
  EXPECT_EQ(a.first_burst_length, b.first_burst_length);
  EXPECT_EQ(a.default_time2wait, b.default_time2wait);
  EXPECT_EQ(a.default_time2retain, b.default_time2retain);
  EXPECT_EQ(a.max_outstanding_r2t, b.max_outstanding_r2t);
  EXPECT_EQ(a.data_pdu_in_order, b.data_pdu_in_order);
  EXPECT_EQ(a.data_sequence_in_order, b.data_sequence_in_order);
  EXPECT_EQ(a.error_recovery_level, b.error_recovery_level);
  EXPECT_EQ(a.initiator_max_recv_dsl, b.initiator_max_recv_dsl);
  EXPECT_EQ(a.target_max_recv_dsl, b.target_max_recv_dsl);
  EXPECT_EQ(a.rdma_extensions, b.rdma_extensions);
  EXPECT_EQ(a.initiator_recv_dsl, b.initiator_recv_dsl);
  EXPECT_EQ(a.target_recv_dsl, b.target_recv_dsl);
  EXPECT_EQ(a.max_outstanding_unexpected_pdus, b.max_outstanding_unexpected_pdus);
  EXPECT_EQ(a.target_max_outstanding_unexpected_pdus, b.target_max_outstanding_unexpected_pdus);
  EXPECT_EQ(a.max_ahs_length, b.max_ahs_length);
  EXPECT_EQ(a.target_max_ahs_length, b.target_max_ahs_length);
  EXPECT_EQ(a.tagged_buffer_for_solicited_data_only, b.tagged_buffer_for_solicited_data_only);
  EXPECT_EQ(a.iser_hello_required, b.iser_hello_required);
  EXPECT_EQ(a.iscsi_protocol_level, b.iscsi_protocol_level);
}

TEST(EndToEndTest, NoAuthentication) {
  TargetNodeInfo node;
  node.alias = "disk one";
  TargetLoginConfig tc = MakeTargetConfig(node);
  tc.target_portal_group_tag = 7;
  TargetNegotiator tgt(tc, true);
  InitiatorNegotiator ini(MakeInitiatorConfig());
  Outcome o = RunLogin(ini, tgt);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.exchanges, 1);
  EXPECT_EQ(o.requests[0].csg, kOperationalNegotiation);
  EXPECT_EQ(ini.target_portal_group_tag(), 7);
  EXPECT_EQ(ini.target_alias(), "disk one");
  EXPECT_EQ(tgt.initiator_alias(), "node1");
  ExpectSameSessionParams(ini.params(), tgt.params());
  EXPECT_EQ(ini.params().max_burst_length, 262144u);  // both at defaults
}

TEST(EndToEndTest, EveryKey) {
  TargetLoginConfig tc = MakeTargetConfig();
  OperationalParams& t = tc.offer;
  t.header_digest = true;
  t.data_digest = true;
  t.max_connections = 8;
  t.initial_r2t = false;
  t.immediate_data = true;
  t.max_burst_length = 1048576;
  t.first_burst_length = 262144;
  t.default_time2wait = 1;
  t.default_time2retain = 10;
  t.max_outstanding_r2t = 4;
  t.data_pdu_in_order = true;
  t.data_sequence_in_order = false;
  t.error_recovery_level = 2;
  t.target_max_recv_dsl = 262144;
  t.iscsi_protocol_level = 1;

  InitiatorLoginConfig ic = MakeInitiatorConfig();
  OperationalParams& i = ic.offer;
  i.header_digest = true;
  i.data_digest = false;
  i.max_connections = 2;
  i.initial_r2t = false;
  i.immediate_data = false;
  i.max_burst_length = 524288;
  i.first_burst_length = 1048576;  // bounded by both offers and MaxBurstLength
  i.default_time2wait = 3;
  i.default_time2retain = 5;
  i.max_outstanding_r2t = 16;
  i.data_pdu_in_order = false;
  i.data_sequence_in_order = false;
  i.error_recovery_level = 1;
  i.initiator_max_recv_dsl = 131072;

  TargetNegotiator tgt(tc, true);
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  ASSERT_TRUE(o.status.ok()) << o.status;
  // iSCSIProtocolLevel is proposed by the target (the initiator was silent), so one
  // more exchange is needed for the initiator's answer.
  EXPECT_EQ(o.exchanges, 2);
  const OperationalParams& p = ini.params();
  ExpectSameSessionParams(p, tgt.params());
  EXPECT_TRUE(p.header_digest);
  EXPECT_FALSE(p.data_digest);
  EXPECT_EQ(p.max_connections, 2u);
  EXPECT_FALSE(p.initial_r2t);     // OR
  EXPECT_FALSE(p.immediate_data);  // AND
  EXPECT_EQ(p.max_burst_length, 524288u);
  EXPECT_EQ(p.first_burst_length, 262144u);
  EXPECT_EQ(p.default_time2wait, 3u);    // max
  EXPECT_EQ(p.default_time2retain, 5u);  // min
  EXPECT_EQ(p.max_outstanding_r2t, 4u);
  EXPECT_TRUE(p.data_pdu_in_order);  // OR
  EXPECT_FALSE(p.data_sequence_in_order);
  EXPECT_EQ(p.error_recovery_level, 1u);
  EXPECT_EQ(p.initiator_max_recv_dsl, 131072u);
  EXPECT_EQ(p.target_max_recv_dsl, 262144u);
  EXPECT_EQ(p.iscsi_protocol_level, 0u);  // min(initiator default 0, target 1)
}

TEST(EndToEndTest, Chap) {
  for (int alg : {5, 6, 7, 8}) {
    TargetNodeInfo node;
    node.chap = {"user1", "initiator-secret"};
    TargetNegotiator tgt(MakeTargetConfig(node), true);
    InitiatorLoginConfig ic = MakeInitiatorConfig();
    ic.chap = node.chap;
    ic.chap_algorithms = {alg};
    InitiatorNegotiator ini(ic);
    Outcome o = RunLogin(ini, tgt);
    ASSERT_TRUE(o.status.ok()) << alg << " " << o.status;
    EXPECT_EQ(o.exchanges, 4);  // AuthMethod, CHAP_A, CHAP_R, operational
    ExpectSameSessionParams(ini.params(), tgt.params());
  }
}

TEST(EndToEndTest, MutualChap) {
  TargetNodeInfo node;
  node.chap = {"user1", "initiator-secret"};
  node.mutual_chap = {"target1", "target-secret"};
  TargetNegotiator tgt(MakeTargetConfig(node), true);
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.chap = node.chap;
  ic.mutual_chap = node.mutual_chap;
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(Keys(o.requests[2].text).count("CHAP_C"), 1u);
}

TEST(EndToEndTest, WrongSecret) {
  TargetNodeInfo node;
  node.chap = {"user1", "initiator-secret"};
  TargetNegotiator tgt(MakeTargetConfig(node), true);
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.chap = {"user1", "not-the-secret"};
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kUnauthenticated) << o.status;
  EXPECT_EQ(o.last.status_class, 2);
  EXPECT_EQ(o.last.status_detail, 1);
}

TEST(EndToEndTest, TargetFailsMutualChap) {
  TargetNodeInfo node;
  node.chap = {"user1", "initiator-secret"};
  node.mutual_chap = {"target1", "target-secret"};
  TargetNegotiator tgt(MakeTargetConfig(node), true);
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.chap = node.chap;
  ic.mutual_chap = {"target1", "what-the-initiator-expects"};
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kUnauthenticated) << o.status;
  EXPECT_FALSE(o.last.failed());  // the target was happy; the initiator was not
}

TEST(EndToEndTest, MutualDemandedButTargetHasNoChap) {
  TargetNegotiator tgt(MakeTargetConfig(), true);
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.chap = {"user1", "initiator-secret"};
  ic.mutual_chap = {"target1", "target-secret"};
  InitiatorNegotiator ini(ic);
  EXPECT_FALSE(RunLogin(ini, tgt).status.ok());
}

TEST(EndToEndTest, ChapOfferedToTargetWithoutAuth) {
  TargetNegotiator tgt(MakeTargetConfig(), true);
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.chap = {"user1", "initiator-secret"};
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.exchanges, 2);  // AuthMethod=None, then operational
}

TEST(EndToEndTest, LoginErrorsMapToStatusCodes) {
  {
    TargetNegotiator tgt(MakeTargetConfig(), true);
    InitiatorLoginConfig ic = MakeInitiatorConfig();
    ic.target_name = "iqn.2024-01.io.iser:missing";
    InitiatorNegotiator ini(ic);
    EXPECT_EQ(RunLogin(ini, tgt).status.code(), absl::StatusCode::kNotFound);
  }
  {
    TargetNodeInfo node;
    node.allowed_initiators = {"iqn.other"};
    TargetNegotiator tgt(MakeTargetConfig(node), true);
    InitiatorNegotiator ini(MakeInitiatorConfig());
    EXPECT_EQ(RunLogin(ini, tgt).status.code(), absl::StatusCode::kPermissionDenied);
  }
}

TEST(EndToEndTest, DiscoveryThenSendTargets) {
  TargetNegotiator tgt(MakeTargetConfig(), true);
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.session_type = SessionType::kDiscovery;
  ic.target_name.clear();
  ic.offer.max_burst_length = 65536;  // irrelevant in discovery
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(tgt.session_type(), SessionType::kDiscovery);
  auto sent = Keys(o.requests[0].text);
  EXPECT_EQ(sent.count("MaxBurstLength"), 0u);  // not even proposed
  EXPECT_EQ(sent.count("TargetName"), 0u);
  EXPECT_EQ(sent["SessionType"], "Discovery");

  std::vector<TargetNodeInfo> targets(1);
  targets[0].name = kTarget;
  std::string text = TargetTextResponse(EncodeText({{"SendTargets", "All"}}), tgt.session_type(),
                                        "", targets, {{"192.0.2.1:3260", 1}}, tgt.initiator_name());
  EXPECT_EQ(text, EncodeText({{"TargetName", kTarget}, {"TargetAddress", "192.0.2.1:3260,1"}}));
}

TEST(EndToEndTest, Iser) {
  TargetLoginConfig tc = MakeTargetConfig();
  tc.rdma_capable = true;
  tc.offer.header_digest = true;
  tc.offer.target_recv_dsl = 262144;
  tc.offer.initiator_recv_dsl = 262144;
  tc.offer.target_max_outstanding_unexpected_pdus = 32;
  TargetNegotiator tgt(tc, true);
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.rdma = true;
  ic.offer.header_digest = true;
  ic.offer.target_recv_dsl = 131072;
  ic.offer.initiator_recv_dsl = 1048576;
  ic.offer.max_outstanding_unexpected_pdus = 16;
  ic.offer.iser_hello_required = true;
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  ASSERT_TRUE(o.status.ok()) << o.status;
  const OperationalParams& p = ini.params();
  ExpectSameSessionParams(p, tgt.params());
  EXPECT_TRUE(p.rdma_extensions);
  EXPECT_FALSE(p.header_digest);
  EXPECT_EQ(p.target_recv_dsl, 131072u);
  EXPECT_EQ(p.initiator_recv_dsl, 262144u);
  EXPECT_EQ(p.max_outstanding_unexpected_pdus, 16u);
  EXPECT_EQ(p.target_max_outstanding_unexpected_pdus, 32u);
  EXPECT_TRUE(p.iser_hello_required);
}

TEST(EndToEndTest, IserRefusedFallsBackToTcp) {
  TargetNegotiator tgt(MakeTargetConfig(), true);  // not rdma_capable
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.rdma = true;
  ic.offer.iser_hello_required = true;
  InitiatorNegotiator ini(ic);
  Outcome o = RunLogin(ini, tgt);
  ASSERT_TRUE(o.status.ok()) << o.status;
  ExpectSameSessionParams(ini.params(), tgt.params());
  EXPECT_FALSE(ini.params().rdma_extensions);
  EXPECT_FALSE(ini.params().iser_hello_required);
}

TEST(EndToEndTest, NonLeadingConnection) {
  InitiatorLoginConfig ic = MakeInitiatorConfig();
  ic.offer.max_burst_length = 65536;
  ic.offer.max_connections = 4;
  TargetLoginConfig tc = MakeTargetConfig();
  tc.offer.max_connections = 4;
  TargetNegotiator lead_tgt(tc, true);
  InitiatorNegotiator lead_ini(ic);
  ASSERT_TRUE(RunLogin(lead_ini, lead_tgt).status.ok());

  InitiatorLoginConfig ic2 = ic;
  ic2.leading = false;
  ic2.session_params = lead_ini.params();
  TargetNegotiator tgt2(tc, false, lead_tgt.params());
  InitiatorNegotiator ini2(ic2);
  Outcome o = RunLogin(ini2, tgt2);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(Keys(o.requests[0].text).count("MaxBurstLength"), 0u);
  ExpectSameSessionParams(ini2.params(), tgt2.params());
  EXPECT_EQ(tgt2.params().max_burst_length, 65536u);
  EXPECT_EQ(tgt2.params().max_connections, 4u);
}

}  // namespace
}  // namespace iser::login

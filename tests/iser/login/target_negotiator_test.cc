#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "iser/login/chap.h"
#include "iser/login/negotiation.h"
#include "iser/login/text_codec.h"
#include "tests/iser/login/login_test_util.h"

namespace iser::login {
namespace {

using testing::Keys;
using testing::kInitiator;
using testing::kTarget;
using testing::MakeTargetConfig;
using testing::Text;

// Exactly what libiscsi's iscsi_login_async puts in its operational-stage PDU.
KeyValueList LibiscsiOperationalKeys() {
  return {{"InitiatorName", kInitiator},
          {"InitiatorAlias", "libiscsi"},
          {"TargetName", kTarget},
          {"SessionType", "Normal"},
          {"HeaderDigest", "None,CRC32C"},
          {"DataDigest", "None"},
          {"InitialR2T", "No"},
          {"ImmediateData", "Yes"},
          {"MaxBurstLength", "262144"},
          {"FirstBurstLength", "262144"},
          {"DefaultTime2Wait", "2"},
          {"DefaultTime2Retain", "0"},
          {"MaxOutstandingR2T", "1"},
          {"ErrorRecoveryLevel", "0"},
          {"IFMarker", "No"},
          {"OFMarker", "No"},
          {"MaxConnections", "1"},
          {"MaxRecvDataSegmentLength", "262144"},
          {"DataPDUInOrder", "Yes"},
          {"DataSequenceInOrder", "Yes"}};
}

LoginRequest Req(uint8_t csg, uint8_t nsg, bool t, const std::string& text) {
  return LoginRequest{csg, nsg, t, text};
}

TEST(TargetNegotiatorTest, LibiscsiLoginWithoutAuthInOnePdu) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.target_max_recv_dsl = 65536;
  cfg.offer.max_burst_length = 1048576;
  cfg.offer.first_burst_length = 65536;
  cfg.offer.initial_r2t = false;
  TargetNegotiator t(cfg, /*leading=*/true);
  std::string text = Text(LibiscsiOperationalKeys());
  LoginResponse r = t.Step(Req(1, 3, true, text));
  ASSERT_FALSE(r.failed()) << int(r.status_detail);
  EXPECT_TRUE(r.transit);
  EXPECT_EQ(r.csg, 1);
  EXPECT_EQ(r.nsg, 3);
  EXPECT_TRUE(r.full_feature);
  auto k = Keys(r.text);
  EXPECT_EQ(k["TargetPortalGroupTag"], "1");
  EXPECT_EQ(k["HeaderDigest"], "None");
  EXPECT_EQ(k["DataDigest"], "None");
  EXPECT_EQ(k["InitialR2T"], "No");
  EXPECT_EQ(k["ImmediateData"], "Yes");
  EXPECT_EQ(k["MaxBurstLength"], "262144");
  EXPECT_EQ(k["FirstBurstLength"], "65536");
  EXPECT_EQ(k["DefaultTime2Wait"], "2");
  EXPECT_EQ(k["DefaultTime2Retain"], "0");
  EXPECT_EQ(k["MaxOutstandingR2T"], "1");
  EXPECT_EQ(k["ErrorRecoveryLevel"], "0");
  EXPECT_EQ(k["IFMarker"], "No");
  EXPECT_EQ(k["OFMarker"], "No");
  EXPECT_EQ(k["MaxConnections"], "1");
  EXPECT_EQ(k["MaxRecvDataSegmentLength"], "65536");
  EXPECT_EQ(k["DataPDUInOrder"], "Yes");
  EXPECT_EQ(k["DataSequenceInOrder"], "Yes");
  EXPECT_EQ(k.count("InitiatorAlias"), 0u);

  const OperationalParams& p = t.params();
  EXPECT_EQ(p.initiator_max_recv_dsl, 262144u);
  EXPECT_EQ(p.target_max_recv_dsl, 65536u);
  EXPECT_EQ(p.max_burst_length, 262144u);
  EXPECT_EQ(p.first_burst_length, 65536u);
  EXPECT_FALSE(p.initial_r2t);
  EXPECT_TRUE(p.immediate_data);
  EXPECT_EQ(p.default_time2retain, 0u);
  EXPECT_EQ(t.initiator_name(), kInitiator);
  EXPECT_EQ(t.initiator_alias(), "libiscsi");
  EXPECT_EQ(t.target_name(), kTarget);
  EXPECT_EQ(t.session_type(), SessionType::kNormal);
}

TEST(TargetNegotiatorTest, CrcDigestWhenInitiatorPrefersIt) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.header_digest = true;
  cfg.offer.data_digest = true;
  TargetNegotiator t(cfg, true);
  KeyValueList kv = LibiscsiOperationalKeys();
  kv[4].value = "CRC32C,None";
  kv[5].value = "CRC32C";
  LoginResponse r = t.Step(Req(1, 3, true, Text(kv)));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["HeaderDigest"], "CRC32C");
  EXPECT_EQ(Keys(r.text)["DataDigest"], "CRC32C");
  EXPECT_TRUE(t.params().header_digest);
  EXPECT_TRUE(t.params().data_digest);
}

TEST(TargetNegotiatorTest, CrcDigestPreferredWhenOfferedAndAllowed) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.header_digest = true;
  TargetNegotiator t(cfg, true);
  // libiscsi's default is "None,CRC32C".
  LoginResponse r = t.Step(Req(1, 3, true, Text(LibiscsiOperationalKeys())));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["HeaderDigest"], "CRC32C");
  EXPECT_EQ(Keys(r.text)["DataDigest"], "None");  // only None was offered
  EXPECT_TRUE(t.params().header_digest);
  EXPECT_FALSE(t.params().data_digest);
}

TEST(TargetNegotiatorTest, DigestNotAllowedIsRejectOrNone) {
  TargetNegotiator t(MakeTargetConfig(), true);
  KeyValueList kv = LibiscsiOperationalKeys();
  kv[4].value = "CRC32C,None";
  kv[5].value = "CRC32C";
  LoginResponse r = t.Step(Req(1, 3, true, Text(kv)));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["HeaderDigest"], "None");
  EXPECT_EQ(Keys(r.text)["DataDigest"], "Reject");
  EXPECT_FALSE(t.params().data_digest);
}

TEST(TargetNegotiatorTest, TargetProposesWhenInitiatorSilent) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.max_burst_length = 1048576;
  cfg.offer.immediate_data = false;
  cfg.offer.header_digest = true;
  TargetNegotiator t(cfg, true);
  LoginResponse r =
      t.Step(Req(1, 3, true, Text({{"InitiatorName", kInitiator}, {"TargetName", kTarget}})));
  ASSERT_FALSE(r.failed());
  EXPECT_FALSE(r.transit);  // proposals outstanding: may not transit yet
  auto k = Keys(r.text);
  EXPECT_EQ(k["MaxBurstLength"], "1048576");
  EXPECT_EQ(k["ImmediateData"], "No");
  EXPECT_EQ(k["HeaderDigest"], "CRC32C,None");
  EXPECT_EQ(k["MaxRecvDataSegmentLength"], "8192");
  EXPECT_EQ(k.count("MaxConnections"), 0u);  // equals the default: not proposed
  r = t.Step(Req(
      1, 3, true,
      Text({{"MaxBurstLength", "524288"}, {"ImmediateData", "No"}, {"HeaderDigest", "CRC32C"}})));
  ASSERT_FALSE(r.failed());
  EXPECT_TRUE(r.transit);
  EXPECT_TRUE(r.full_feature);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(t.params().max_burst_length, 524288u);
  EXPECT_FALSE(t.params().immediate_data);
  EXPECT_TRUE(t.params().header_digest);
}

TEST(TargetNegotiatorTest, BadAnswerToProposalFailsLogin) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.max_burst_length = 1048576;
  TargetNegotiator t(cfg, true);
  t.Step(Req(1, 3, true, Text({{"InitiatorName", kInitiator}, {"TargetName", kTarget}})));
  LoginResponse r = t.Step(Req(1, 3, true, Text({{"MaxBurstLength", "2097152"}})));
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.status_class, 2);
}

TEST(TargetNegotiatorTest, NoTransitUntilInitiatorAsks) {
  TargetNegotiator t(MakeTargetConfig(), true);
  LoginResponse r = t.Step(Req(1, 3, false, Text(LibiscsiOperationalKeys())));
  ASSERT_FALSE(r.failed());
  EXPECT_FALSE(r.transit);
  r = t.Step(Req(1, 3, true, ""));
  ASSERT_FALSE(r.failed());
  EXPECT_TRUE(r.transit);
  EXPECT_TRUE(r.full_feature);
}

TEST(TargetNegotiatorTest, KeysSplitOverSeveralPdusGiveTheSameResult) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.max_burst_length = 1048576;
  cfg.offer.target_max_recv_dsl = 65536;
  TargetNegotiator whole(cfg, true);
  KeyValueList kv = LibiscsiOperationalKeys();
  ASSERT_TRUE(whole.Step(Req(1, 3, true, Text(kv))).full_feature);
  // The names must come in the first request (sec 13.4 / 13.5); the rest may be spread.
  for (size_t split = 3; split < kv.size(); ++split) {
    TargetNegotiator t(cfg, true);
    KeyValueList a(kv.begin(), kv.begin() + split), b(kv.begin() + split, kv.end());
    LoginResponse r1 = t.Step(Req(1, 3, false, Text(a)));
    ASSERT_FALSE(r1.failed()) << split;
    EXPECT_FALSE(r1.transit);
    LoginResponse r2 = t.Step(Req(1, 3, true, Text(b)));
    ASSERT_FALSE(r2.failed()) << split;
    EXPECT_TRUE(r2.full_feature) << split;
    auto k1 = Keys(r1.text), k2 = Keys(r2.text);
    for (auto& [key, value] : k2) EXPECT_EQ(k1.count(key), 0u) << key;  // no key twice
    EXPECT_EQ(t.params().max_burst_length, whole.params().max_burst_length);
    EXPECT_EQ(t.params().first_burst_length, whole.params().first_burst_length);
    EXPECT_EQ(t.params().initiator_max_recv_dsl, whole.params().initiator_max_recv_dsl);
    EXPECT_EQ(t.params().target_max_recv_dsl, 65536u);
    EXPECT_EQ(t.params().default_time2retain, whole.params().default_time2retain);
    EXPECT_EQ(t.params().initial_r2t, whole.params().initial_r2t);
  }
}

TEST(TargetNegotiatorTest, RepeatedKeySameValueIsAnsweredAgain) {
  TargetNegotiator t(MakeTargetConfig(), true);
  std::string text = Text(LibiscsiOperationalKeys());
  LoginResponse r = t.Step(Req(1, 3, false, text));
  ASSERT_FALSE(r.failed());
  r = t.Step(Req(1, 3, true, text));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["MaxBurstLength"], "262144");
  EXPECT_TRUE(r.full_feature);
}

TEST(TargetNegotiatorTest, ChangedRenegotiationFails) {
  TargetNegotiator t(MakeTargetConfig(), true);
  KeyValueList kv = LibiscsiOperationalKeys();
  t.Step(Req(1, 3, false, Text(kv)));
  LoginResponse r = t.Step(Req(1, 3, true, Text({{"MaxBurstLength", "8192"}})));
  EXPECT_TRUE(r.failed());
}

TEST(TargetNegotiatorTest, KeySemantics) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.max_connections = 4;
  cfg.offer.max_outstanding_r2t = 8;
  cfg.offer.default_time2wait = 5;
  cfg.offer.default_time2retain = 30;
  cfg.offer.error_recovery_level = 1;
  cfg.offer.data_pdu_in_order = false;
  cfg.offer.data_sequence_in_order = false;
  cfg.offer.iscsi_protocol_level = 1;
  TargetNegotiator t(cfg, true);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"MaxConnections", "2"},
                                     {"MaxOutstandingR2T", "16"},
                                     {"DefaultTime2Wait", "1"},
                                     {"DefaultTime2Retain", "60"},
                                     {"ErrorRecoveryLevel", "2"},
                                     {"DataPDUInOrder", "No"},
                                     {"DataSequenceInOrder", "Yes"},
                                     {"InitialR2T", "Yes"},
                                     {"ImmediateData", "No"},
                                     {"FirstBurstLength", "4096"},
                                     {"TaskReporting", "FastAbort,RFC3720"},
                                     {"iSCSIProtocolLevel", "2"},
                                     {"OFMarkInt", "1~65535"},
                                     {"IFMarkInt", "2048"},
                                     {"X-com.example.foo", "bar"},
                                     {"X#org.example", "1"},
                                     {"Unknown", "1"}})));
  ASSERT_FALSE(r.failed());
  auto k = Keys(r.text);
  EXPECT_EQ(k["MaxConnections"], "2");
  EXPECT_EQ(k["MaxOutstandingR2T"], "8");
  EXPECT_EQ(k["DefaultTime2Wait"], "5");
  EXPECT_EQ(k["DefaultTime2Retain"], "30");
  EXPECT_EQ(k["ErrorRecoveryLevel"], "1");
  EXPECT_EQ(k["DataPDUInOrder"], "No");
  EXPECT_EQ(k["DataSequenceInOrder"], "Yes");
  EXPECT_EQ(k["InitialR2T"], "Yes");
  EXPECT_EQ(k["ImmediateData"], "No");
  EXPECT_EQ(k["FirstBurstLength"], "Irrelevant");
  EXPECT_EQ(k["TaskReporting"], "RFC3720");
  EXPECT_EQ(k["iSCSIProtocolLevel"], "1");
  EXPECT_EQ(k["OFMarkInt"], "Irrelevant");
  EXPECT_EQ(k["IFMarkInt"], "Irrelevant");
  EXPECT_EQ(k["X-com.example.foo"], "NotUnderstood");
  EXPECT_EQ(k["X#org.example"], "NotUnderstood");
  EXPECT_EQ(k["Unknown"], "NotUnderstood");
  const OperationalParams& p = t.params();
  EXPECT_EQ(p.max_connections, 2u);
  EXPECT_EQ(p.max_outstanding_r2t, 8u);
  EXPECT_EQ(p.default_time2wait, 5u);
  EXPECT_EQ(p.default_time2retain, 30u);
  EXPECT_EQ(p.error_recovery_level, 1u);
  EXPECT_FALSE(p.data_pdu_in_order);
  EXPECT_TRUE(p.data_sequence_in_order);
  EXPECT_EQ(p.iscsi_protocol_level, 1u);
}

TEST(TargetNegotiatorTest, OutOfRangeAndMalformedValuesAreRejected) {
  TargetNegotiator t(MakeTargetConfig(), true);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"MaxBurstLength", "511"},
                                     {"FirstBurstLength", "16777216"},
                                     {"MaxConnections", "0"},
                                     {"ErrorRecoveryLevel", "3"},
                                     {"DefaultTime2Wait", "3601"},
                                     {"InitialR2T", "Maybe"},
                                     {"HeaderDigest", "MD5"},
                                     {"MaxRecvDataSegmentLength", "100"},
                                     {"OFMarker", "Perhaps"}})));
  ASSERT_FALSE(r.failed());
  auto k = Keys(r.text);
  for (const char* key :
       {"MaxBurstLength", "FirstBurstLength", "MaxConnections", "ErrorRecoveryLevel",
        "DefaultTime2Wait", "InitialR2T", "HeaderDigest", "MaxRecvDataSegmentLength", "OFMarker"}) {
    EXPECT_EQ(k[key], "Reject") << key;
  }
  EXPECT_EQ(t.params().max_burst_length, 262144u);
  EXPECT_EQ(t.params().initiator_max_recv_dsl, 8192u);
  // Our own MaxRecvDataSegmentLength could not share the PDU with the Reject: it follows
  // in the next one, and only then may the target transit.
  EXPECT_FALSE(r.transit);
  r = t.Step(Req(1, 3, true, ""));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["MaxRecvDataSegmentLength"], "8192");
  EXPECT_TRUE(r.full_feature);
}

TEST(TargetNegotiatorTest, NumericEncodings) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.max_burst_length = 16776192;
  TargetNegotiator t(cfg, true);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"MaxBurstLength", "0x100000"},
                                     {"MaxRecvDataSegmentLength", "0bAAEAAA=="}})));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["MaxBurstLength"], "1048576");
  EXPECT_EQ(t.params().initiator_max_recv_dsl, 65536u);
}

TEST(TargetNegotiatorTest, FirstBurstBoundedByMaxBurst) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.first_burst_length = 1048576;
  cfg.offer.max_burst_length = 1048576;
  TargetNegotiator t(cfg, true);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"FirstBurstLength", "524288"},
                                     {"MaxBurstLength", "131072"}})));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["FirstBurstLength"], "131072");
  EXPECT_EQ(t.params().first_burst_length, 131072u);
}

TEST(TargetNegotiatorTest, LoginErrors) {
  struct Case {
    const char* name;
    KeyValueList keys;
    uint8_t detail;
  };
  std::vector<Case> cases = {
      {"no initiator name", {{"TargetName", kTarget}}, 0x07},
      {"no target name", {{"InitiatorName", kInitiator}}, 0x07},
      {"unknown target", {{"InitiatorName", kInitiator}, {"TargetName", "iqn.x:nope"}}, 0x03},
      {"bad session type",
       {{"InitiatorName", kInitiator}, {"TargetName", kTarget}, {"SessionType", "Weird"}},
       0x09},
  };
  for (const Case& c : cases) {
    TargetNegotiator t(MakeTargetConfig(), true);
    LoginResponse r = t.Step(Req(1, 3, true, Text(c.keys)));
    EXPECT_TRUE(r.failed()) << c.name;
    EXPECT_EQ(r.status_class, 2) << c.name;
    EXPECT_EQ(r.status_detail, c.detail) << c.name;
    // Stays failed.
    EXPECT_TRUE(t.Step(Req(1, 3, true, "")).failed());
  }
}

TEST(TargetNegotiatorTest, AclDeniesOtherInitiators) {
  TargetNodeInfo node;
  node.allowed_initiators = {"iqn.2024-01.io.client:other"};
  TargetNegotiator t(MakeTargetConfig(node), true);
  LoginResponse r = t.Step(Req(1, 3, true, Text(LibiscsiOperationalKeys())));
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.status_detail, 0x02);
  node.allowed_initiators.push_back(kInitiator);
  TargetNegotiator t2(MakeTargetConfig(node), true);
  EXPECT_FALSE(t2.Step(Req(1, 3, true, Text(LibiscsiOperationalKeys()))).failed());
}

TEST(TargetNegotiatorTest, StageRules) {
  std::string names = Text({{"InitiatorName", kInitiator}, {"TargetName", kTarget}});
  {  // transit backwards / to the reserved stage
    TargetNegotiator t(MakeTargetConfig(), true);
    EXPECT_TRUE(t.Step(Req(1, 0, true, names)).failed());
    TargetNegotiator t2(MakeTargetConfig(), true);
    EXPECT_TRUE(t2.Step(Req(0, 2, true, names)).failed());
    TargetNegotiator t3(MakeTargetConfig(), true);
    EXPECT_TRUE(t3.Step(Req(3, 3, true, names)).failed());
  }
  {  // CSG must match the stage the target moved to
    TargetNegotiator t(MakeTargetConfig(), true);
    LoginResponse r = t.Step(Req(0, 1, true, names + Text({{"AuthMethod", "None"}})));
    ASSERT_FALSE(r.failed());
    EXPECT_TRUE(r.transit);
    EXPECT_EQ(r.nsg, 1);
    EXPECT_EQ(Keys(r.text)["AuthMethod"], "None");
    EXPECT_TRUE(t.Step(Req(0, 1, true, "")).failed());
  }
  {  // operational keys are not allowed in the security stage, nor security keys later
    TargetNegotiator t(MakeTargetConfig(), true);
    EXPECT_TRUE(t.Step(Req(0, 1, true, names + Text({{"MaxBurstLength", "512"}}))).failed());
    TargetNegotiator t2(MakeTargetConfig(), true);
    EXPECT_TRUE(t2.Step(Req(1, 3, true, names + Text({{"AuthMethod", "None"}}))).failed());
  }
  {  // security straight to full feature phase
    TargetNegotiator t(MakeTargetConfig(), true);
    LoginResponse r = t.Step(Req(0, 3, true, names + Text({{"AuthMethod", "None"}})));
    ASSERT_FALSE(r.failed());
    EXPECT_TRUE(r.full_feature);
    EXPECT_EQ(r.nsg, 3);
    // ... unless the target has something to declare: then it stops in operational.
    TargetLoginConfig cfg = MakeTargetConfig();
    cfg.offer.target_max_recv_dsl = 262144;
    TargetNegotiator t2(cfg, true);
    r = t2.Step(Req(0, 3, true, names + Text({{"AuthMethod", "None"}})));
    ASSERT_FALSE(r.failed());
    EXPECT_TRUE(r.transit);
    EXPECT_EQ(r.nsg, 1);
    EXPECT_FALSE(r.full_feature);
    r = t2.Step(Req(1, 3, true, ""));
    ASSERT_FALSE(r.failed());
    EXPECT_TRUE(r.full_feature);
    EXPECT_EQ(Keys(r.text)["MaxRecvDataSegmentLength"], "262144");
    EXPECT_EQ(t2.params().target_max_recv_dsl, 262144u);
  }
  {  // malformed text
    TargetNegotiator t(MakeTargetConfig(), true);
    EXPECT_TRUE(t.Step(Req(1, 3, true, names + names)).failed());
  }
  {  // login PDUs after full feature phase
    TargetNegotiator t(MakeTargetConfig(), true);
    ASSERT_TRUE(t.Step(Req(1, 3, true, names)).full_feature);
    LoginResponse r = t.Step(Req(1, 3, true, names));
    EXPECT_TRUE(r.failed());
    EXPECT_EQ(r.status_detail, 0x0b);
  }
}

TEST(TargetNegotiatorTest, TargetOnlyKeysFromInitiatorAreRejected) {
  TargetNegotiator t(MakeTargetConfig(), true);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"TargetAlias", "x"},
                                     {"SendTargets", "All"}})));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["TargetAlias"], "Reject");
  EXPECT_EQ(Keys(r.text)["SendTargets"], "Reject");
}

TEST(TargetNegotiatorTest, TargetAliasDeclared) {
  TargetNodeInfo node;
  node.alias = "disk one";
  TargetNegotiator t(MakeTargetConfig(node), true);
  LoginResponse r = t.Step(Req(1, 3, true, Text(LibiscsiOperationalKeys())));
  EXPECT_EQ(Keys(r.text)["TargetAlias"], "disk one");
}

TEST(TargetNegotiatorTest, DiscoverySession) {
  TargetNegotiator t(MakeTargetConfig(), true);
  KeyValueList kv = LibiscsiOperationalKeys();
  kv.erase(kv.begin() + 2);  // no TargetName
  kv[2].value = "Discovery";
  LoginResponse r = t.Step(Req(1, 3, true, Text(kv)));
  ASSERT_FALSE(r.failed()) << int(r.status_detail);
  EXPECT_TRUE(r.full_feature);
  auto k = Keys(r.text);
  EXPECT_EQ(k.count("TargetPortalGroupTag"), 0u);
  EXPECT_EQ(k["HeaderDigest"], "None");
  for (const char* key :
       {"MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength",
        "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder"}) {
    EXPECT_EQ(k[key], "Irrelevant") << key;
  }
  EXPECT_EQ(k["ErrorRecoveryLevel"], "0");
  EXPECT_EQ(t.session_type(), SessionType::kDiscovery);
  EXPECT_EQ(t.target_name(), "");
}

TEST(TargetNegotiatorTest, NonLeadingConnection) {
  OperationalParams session;
  session.max_burst_length = 65536;
  session.immediate_data = false;
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.offer.header_digest = true;
  TargetNegotiator t(cfg, /*leading=*/false, session);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"HeaderDigest", "CRC32C"},
                                     {"MaxBurstLength", "512"},
                                     {"MaxRecvDataSegmentLength", "4096"}})));
  ASSERT_FALSE(r.failed());
  auto k = Keys(r.text);
  EXPECT_EQ(k["MaxBurstLength"], "Irrelevant");
  EXPECT_EQ(k["HeaderDigest"], "CRC32C");
  EXPECT_EQ(t.params().max_burst_length, 65536u);
  EXPECT_FALSE(t.params().immediate_data);
  EXPECT_TRUE(t.params().header_digest);
  EXPECT_EQ(t.params().initiator_max_recv_dsl, 4096u);
}

TEST(TargetNegotiatorTest, IserKeys) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.rdma_capable = true;
  cfg.offer.header_digest = true;
  cfg.offer.target_recv_dsl = 65536;
  cfg.offer.initiator_recv_dsl = 262144;
  cfg.offer.target_max_outstanding_unexpected_pdus = 64;
  TargetNegotiator t(cfg, true);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"HeaderDigest", "CRC32C,None"},
                                     {"RDMAExtensions", "Yes"},
                                     {"TargetRecvDataSegmentLength", "131072"},
                                     {"InitiatorRecvDataSegmentLength", "131072"},
                                     {"MaxOutstandingUnexpectedPDUs", "32"},
                                     {"MaxAHSLength", "0"},
                                     {"iSERHelloRequired", "Yes"},
                                     {"TaggedBufferForSolicitedDataOnly", "No"},
                                     {"MaxRecvDataSegmentLength", "262144"}})));
  ASSERT_FALSE(r.failed());
  auto k = Keys(r.text);
  EXPECT_EQ(k["RDMAExtensions"], "Yes");
  EXPECT_EQ(k["HeaderDigest"], "None");  // forced by iSER
  EXPECT_EQ(k["TargetRecvDataSegmentLength"], "65536");
  EXPECT_EQ(k["InitiatorRecvDataSegmentLength"], "131072");
  EXPECT_EQ(k["MaxOutstandingUnexpectedPDUs"], "64");  // the target's own declaration
  EXPECT_EQ(k.count("MaxRecvDataSegmentLength"), 0u);  // replaced by the iSER keys
  EXPECT_TRUE(r.full_feature);
  const OperationalParams& p = t.params();
  EXPECT_TRUE(p.rdma_extensions);
  EXPECT_FALSE(p.header_digest);
  EXPECT_EQ(p.target_recv_dsl, 65536u);
  EXPECT_EQ(p.initiator_recv_dsl, 131072u);
  EXPECT_EQ(p.max_outstanding_unexpected_pdus, 32u);
  EXPECT_EQ(p.target_max_outstanding_unexpected_pdus, 64u);
  EXPECT_EQ(p.max_ahs_length, 0u);
  EXPECT_TRUE(p.iser_hello_required);
}

TEST(TargetNegotiatorTest, IserRefusedWithoutRdma) {
  TargetNegotiator t(MakeTargetConfig(), true);
  LoginResponse r = t.Step(Req(1, 3, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"TargetName", kTarget},
                                     {"RDMAExtensions", "Yes"},
                                     {"TargetRecvDataSegmentLength", "131072"}})));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["RDMAExtensions"], "No");
  EXPECT_EQ(Keys(r.text)["TargetRecvDataSegmentLength"], "Irrelevant");
  EXPECT_FALSE(t.params().rdma_extensions);
}

TEST(TargetNegotiatorTest, RdmaExtensionsOnlyInFirstOperationalPdu) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.rdma_capable = true;
  TargetNegotiator t(cfg, true);
  t.Step(Req(1, 3, false, Text({{"InitiatorName", kInitiator}, {"TargetName", kTarget}})));
  LoginResponse r = t.Step(Req(1, 3, true, Text({{"RDMAExtensions", "Yes"}})));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["RDMAExtensions"], "Reject");
  EXPECT_FALSE(t.params().rdma_extensions);
}

// --- CHAP, driven by hand the way libiscsi does it -------------------------------------

std::string Md5Response(uint8_t id, const std::string& secret, const std::string& challenge) {
  return EncodeHex(*ChapResponse(kChapMd5, id, secret, challenge));
}

TargetNodeInfo ChapNode(bool mutual) {
  TargetNodeInfo node;
  node.chap = {"user1", "secret-of-user1"};
  if (mutual) node.mutual_chap = {"target1", "secret-of-target1"};
  return node;
}

struct ChapRun {
  LoginResponse r;
  uint8_t id = 0;
  std::string challenge;
};

// Runs the first two legs: AuthMethod, then CHAP_A.
ChapRun StartChap(TargetNegotiator& t, const std::string& algs = "5") {
  ChapRun run;
  run.r = t.Step(Req(0, 1, true,
                     Text({{"InitiatorName", kInitiator},
                           {"TargetName", kTarget},
                           {"SessionType", "Normal"},
                           {"AuthMethod", "CHAP,None"}})));
  EXPECT_FALSE(run.r.failed());
  EXPECT_FALSE(run.r.transit);
  EXPECT_EQ(Keys(run.r.text)["AuthMethod"], "CHAP");
  EXPECT_EQ(Keys(run.r.text)["TargetPortalGroupTag"], "1");
  run.r = t.Step(Req(0, 1, false, Text({{"CHAP_A", algs}})));
  auto k = Keys(run.r.text);
  run.id = static_cast<uint8_t>(ParseNumber(k["CHAP_I"]).value_or(0));
  run.challenge = ParseBinary(k["CHAP_C"]).value_or("");
  return run;
}

TEST(TargetChapTest, OneWayChapLikeLibiscsi) {
  TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
  ChapRun run = StartChap(t);
  ASSERT_FALSE(run.r.failed());
  EXPECT_EQ(Keys(run.r.text)["CHAP_A"], "5");
  EXPECT_EQ(run.challenge.size(), 16u);
  EXPECT_TRUE(Keys(run.r.text)["CHAP_C"].starts_with("0x"));  // libiscsi only parses hex
  LoginResponse r =
      t.Step(Req(0, 1, true,
                 Text({{"CHAP_N", "user1"},
                       {"CHAP_R", Md5Response(run.id, "secret-of-user1", run.challenge)}})));
  ASSERT_FALSE(r.failed());
  EXPECT_TRUE(r.transit);
  EXPECT_EQ(r.nsg, 1);
  // libiscsi repeats the names in the operational stage.
  r = t.Step(Req(1, 3, true, Text(LibiscsiOperationalKeys())));
  ASSERT_FALSE(r.failed()) << int(r.status_detail);
  EXPECT_TRUE(r.full_feature);
}

TEST(TargetChapTest, Base64ResponseAccepted) {
  TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
  ChapRun run = StartChap(t);
  std::string resp = *ChapResponse(kChapMd5, run.id, "secret-of-user1", run.challenge);
  LoginResponse r =
      t.Step(Req(0, 1, true, Text({{"CHAP_N", "user1"}, {"CHAP_R", EncodeBase64(resp)}})));
  EXPECT_FALSE(r.failed());
}

TEST(TargetChapTest, WrongSecretUserOrMissingResponse) {
  for (int variant = 0; variant < 4; ++variant) {
    TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
    ChapRun run = StartChap(t);
    std::string good = Md5Response(run.id, "secret-of-user1", run.challenge);
    KeyValueList kv;
    switch (variant) {
      case 0:
        kv = {{"CHAP_N", "user1"}, {"CHAP_R", Md5Response(run.id, "wrong", run.challenge)}};
        break;
      case 1:
        kv = {{"CHAP_N", "user2"}, {"CHAP_R", good}};
        break;
      case 2:
        kv = {{"CHAP_N", "user1"}};
        break;
      case 3:
        kv = {{"CHAP_N", "user1"}, {"CHAP_R", "0xzz"}};
        break;
    }
    LoginResponse r = t.Step(Req(0, 1, true, Text(kv)));
    EXPECT_TRUE(r.failed()) << variant;
    EXPECT_EQ(r.status_class, 2);
    EXPECT_EQ(r.status_detail, variant == 2 ? 0x07 : 0x01) << variant;
  }
}

TEST(TargetChapTest, ChapRequiredButSkipped) {
  {  // straight into operational stage
    TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
    LoginResponse r = t.Step(Req(1, 3, true, Text(LibiscsiOperationalKeys())));
    EXPECT_TRUE(r.failed());
    EXPECT_EQ(r.status_detail, 0x01);
  }
  {  // AuthMethod=None only
    TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
    LoginResponse r = t.Step(Req(
        0, 1, true,
        Text({{"InitiatorName", kInitiator}, {"TargetName", kTarget}, {"AuthMethod", "None"}})));
    EXPECT_TRUE(r.failed());
    EXPECT_EQ(r.status_detail, 0x01);
    EXPECT_EQ(Keys(r.text)["AuthMethod"], "Reject");
  }
  {  // transit request without ever starting
    TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
    LoginResponse r =
        t.Step(Req(0, 1, true, Text({{"InitiatorName", kInitiator}, {"TargetName", kTarget}})));
    EXPECT_TRUE(r.failed());
  }
  {  // unsupported algorithm list
    TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
    ChapRun run = StartChap(t, "1,2,99");
    EXPECT_TRUE(run.r.failed());
    EXPECT_EQ(Keys(run.r.text)["CHAP_A"], "Reject");
  }
}

TEST(TargetChapTest, ChapOfferedButTargetWantsNone) {
  TargetNegotiator t(MakeTargetConfig(), true);
  LoginResponse r = t.Step(Req(
      0, 1, true,
      Text({{"InitiatorName", kInitiator}, {"TargetName", kTarget}, {"AuthMethod", "CHAP,None"}})));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["AuthMethod"], "None");
  EXPECT_TRUE(r.transit);
}

TEST(TargetChapTest, AlgorithmChoiceFollowsInitiatorOrder) {
  for (int alg : {kChapSha256, kChapSha1, kChapSha3_256, kChapMd5}) {
    TargetNegotiator t(MakeTargetConfig(ChapNode(false)), true);
    ChapRun run = StartChap(t, std::to_string(alg) + ",5");
    ASSERT_FALSE(run.r.failed());
    EXPECT_EQ(Keys(run.r.text)["CHAP_A"], std::to_string(alg));
    EXPECT_EQ(run.challenge.size(), ChapChallengeLength(alg));
    std::string resp = EncodeHex(*ChapResponse(alg, run.id, "secret-of-user1", run.challenge));
    LoginResponse r = t.Step(Req(0, 1, true, Text({{"CHAP_N", "user1"}, {"CHAP_R", resp}})));
    EXPECT_FALSE(r.failed()) << alg;
  }
  TargetLoginConfig cfg = MakeTargetConfig(ChapNode(false));
  cfg.chap_algorithms = {kChapSha256};  // MD5 disabled
  TargetNegotiator t(cfg, true);
  ChapRun run = StartChap(t, "5,7");
  EXPECT_EQ(Keys(run.r.text)["CHAP_A"], "7");
}

TEST(TargetChapTest, MutualChap) {
  TargetNegotiator t(MakeTargetConfig(ChapNode(true)), true);
  ChapRun run = StartChap(t);
  std::string my_challenge = "0123456789abcdef0123456789abcdef";
  LoginResponse r =
      t.Step(Req(0, 1, true,
                 Text({{"CHAP_N", "user1"},
                       {"CHAP_R", Md5Response(run.id, "secret-of-user1", run.challenge)},
                       {"CHAP_I", "7"},
                       {"CHAP_C", EncodeHex(my_challenge)}})));
  ASSERT_FALSE(r.failed());
  EXPECT_TRUE(r.transit);
  auto k = Keys(r.text);
  EXPECT_EQ(k["CHAP_N"], "target1");
  EXPECT_EQ(k["CHAP_R"], Md5Response(7, "secret-of-target1", my_challenge));
}

TEST(TargetChapTest, MutualChapFailures) {
  for (int variant = 0; variant < 4; ++variant) {
    TargetNodeInfo node = ChapNode(variant != 0);
    if (variant == 3) node.mutual_chap.secret = node.chap.secret;
    TargetNegotiator t(MakeTargetConfig(node), true);
    ChapRun run = StartChap(t);
    KeyValueList kv = {{"CHAP_N", "user1"},
                       {"CHAP_R", Md5Response(run.id, "secret-of-user1", run.challenge)},
                       {"CHAP_I", "7"},
                       {"CHAP_C", EncodeHex("0123456789abcdef")}};
    if (variant == 1) kv[3].value = EncodeHex(run.challenge);  // reflected challenge
    if (variant == 2) kv.pop_back();                           // CHAP_I without CHAP_C
    LoginResponse r = t.Step(Req(0, 1, true, Text(kv)));
    EXPECT_TRUE(r.failed()) << variant;
  }
}

TEST(TargetChapTest, DiscoveryChap) {
  TargetLoginConfig cfg = MakeTargetConfig();
  cfg.discovery_chap = {"disc", "discovery-secret"};
  TargetNegotiator t(cfg, true);
  LoginResponse r = t.Step(Req(0, 1, true,
                               Text({{"InitiatorName", kInitiator},
                                     {"SessionType", "Discovery"},
                                     {"AuthMethod", "CHAP,None"}})));
  ASSERT_FALSE(r.failed());
  EXPECT_EQ(Keys(r.text)["AuthMethod"], "CHAP");
}

// --- Text requests in full feature phase ------------------------------------------------

TEST(TargetTextResponseTest, SendTargets) {
  std::vector<TargetNodeInfo> targets(3);
  targets[0].name = "iqn.a";
  targets[1].name = "iqn.b";
  targets[1].allowed_initiators = {"iqn.someone-else"};
  targets[2].name = "iqn.c";
  std::vector<PortalInfo> portals = {{"10.0.0.1:3260", 1}, {"[fe80::1]:3260", 2}};
  auto req = [](const std::string& v) { return Text({{"SendTargets", v}}); };
  EXPECT_EQ(
      TargetTextResponse(req("All"), SessionType::kDiscovery, "", targets, portals, kInitiator),
      Text({{"TargetName", "iqn.a"},
            {"TargetAddress", "10.0.0.1:3260,1"},
            {"TargetAddress", "[fe80::1]:3260,2"},
            {"TargetName", "iqn.c"},
            {"TargetAddress", "10.0.0.1:3260,1"},
            {"TargetAddress", "[fe80::1]:3260,2"}}));
  // All is for discovery sessions only.
  EXPECT_EQ(
      TargetTextResponse(req("All"), SessionType::kNormal, "iqn.a", targets, portals, kInitiator),
      Text({{"SendTargets", "Reject"}}));
  // One named target.
  EXPECT_EQ(
      TargetTextResponse(req("iqn.c"), SessionType::kDiscovery, "", targets, portals, kInitiator),
      Text({{"TargetName", "iqn.c"},
            {"TargetAddress", "10.0.0.1:3260,1"},
            {"TargetAddress", "[fe80::1]:3260,2"}}));
  // Hidden by the ACL, or unknown: nothing.
  EXPECT_EQ(
      TargetTextResponse(req("iqn.b"), SessionType::kDiscovery, "", targets, portals, kInitiator),
      "");
  EXPECT_EQ(
      TargetTextResponse(req("iqn.zz"), SessionType::kDiscovery, "", targets, portals, kInitiator),
      "");
  // Empty value: this session's target.
  EXPECT_EQ(
      TargetTextResponse(req(""), SessionType::kNormal, "iqn.a", targets, portals, kInitiator),
      Text({{"TargetName", "iqn.a"},
            {"TargetAddress", "10.0.0.1:3260,1"},
            {"TargetAddress", "[fe80::1]:3260,2"}}));
}

TEST(TargetTextResponseTest, OtherKeys) {
  std::vector<TargetNodeInfo> targets;
  std::vector<PortalInfo> portals;
  std::string resp = TargetTextResponse(
      Text({{"X-foo", "1"}, {"MaxBurstLength", "512"}, {"MaxRecvDataSegmentLength", "4096"}}),
      SessionType::kNormal, "iqn.a", targets, portals, kInitiator);
  EXPECT_EQ(resp, Text({{"X-foo", "NotUnderstood"}, {"MaxBurstLength", "Reject"}}));
  EXPECT_FALSE(
      TargetTextResponseOrError("garbage", SessionType::kNormal, "", targets, portals, kInitiator)
          .ok());
  EXPECT_EQ(TargetTextResponse("garbage", SessionType::kNormal, "", targets, portals, kInitiator),
            "");
}

}  // namespace
}  // namespace iser::login

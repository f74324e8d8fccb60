// InitiatorNegotiator against hand-written target responses.
#include "iser/login/initiator_negotiator.h"

#include <string>

#include "gtest/gtest.h"
#include "iser/login/chap.h"
#include "iser/login/text_codec.h"
#include "tests/iser/login/login_test_util.h"

namespace iser::login {
namespace {

using testing::Keys;
using testing::kInitiator;
using testing::kTarget;
using testing::Text;

InitiatorLoginConfig Config() {
  InitiatorLoginConfig c;
  c.initiator_name = kInitiator;
  c.target_name = kTarget;
  return c;
}

LoginResponse Resp(uint8_t csg, uint8_t nsg, bool t, const KeyValueList& kv) {
  LoginResponse r;
  r.csg = csg;
  r.nsg = nsg;
  r.transit = t;
  r.text = Text(kv);
  return r;
}

TEST(InitiatorNegotiatorTest, FirstRequestCarriesEveryKey) {
  InitiatorNegotiator ini(Config());
  InitiatorRequest req = ini.Start();
  EXPECT_EQ(req.csg, kOperationalNegotiation);
  EXPECT_EQ(req.nsg, kFullFeaturePhase);
  EXPECT_TRUE(req.transit);
  auto k = Keys(req.text);
  for (const char* key :
       {"InitiatorName", "TargetName", "SessionType", "HeaderDigest", "DataDigest",
        "MaxConnections", "InitialR2T", "ImmediateData", "MaxRecvDataSegmentLength",
        "MaxBurstLength", "FirstBurstLength", "DefaultTime2Wait", "DefaultTime2Retain",
        "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel"}) {
    EXPECT_EQ(k.count(key), 1u) << key;
  }
  EXPECT_EQ(k.count("RDMAExtensions"), 0u);
  EXPECT_EQ(k.count("OFMarker"), 0u);  // obsolete keys are never sent
}

TEST(InitiatorNegotiatorTest, AnswersTargetProposalsAndUnknownKeys) {
  InitiatorLoginConfig c = Config();
  c.offer.max_burst_length = 65536;
  InitiatorNegotiator ini(c);
  ini.Start();
  auto next = ini.OnResponse(Resp(1, 1, false,
                                  {{"MaxBurstLength", "65536"},
                                   {"iSCSIProtocolLevel", "1"},
                                   {"X-vendor.thing", "7"},
                                   {"MaxRecvDataSegmentLength", "262144"}}));
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_TRUE(next->has_value());
  auto k = Keys((*next)->text);
  EXPECT_EQ(k["iSCSIProtocolLevel"], "0");
  EXPECT_EQ(k["X-vendor.thing"], "NotUnderstood");
  EXPECT_EQ(k.count("MaxBurstLength"), 0u);
  auto done = ini.OnResponse(Resp(1, 3, true, {}));
  ASSERT_TRUE(done.ok());
  EXPECT_FALSE(done->has_value());
  EXPECT_EQ(ini.params().max_burst_length, 65536u);
  EXPECT_EQ(ini.params().target_max_recv_dsl, 262144u);
}

TEST(InitiatorNegotiatorTest, ProtocolErrorsFromTarget) {
  {  // an answer above a "min" proposal
    InitiatorNegotiator ini(Config());
    ini.Start();
    EXPECT_FALSE(ini.OnResponse(Resp(1, 3, true, {{"MaxBurstLength", "1048576"}})).ok());
  }
  {  // a digest we did not offer
    InitiatorNegotiator ini(Config());
    ini.Start();
    EXPECT_FALSE(ini.OnResponse(Resp(1, 3, true, {{"HeaderDigest", "CRC32C"}})).ok());
  }
  {  // wrong stage
    InitiatorNegotiator ini(Config());
    ini.Start();
    EXPECT_FALSE(ini.OnResponse(Resp(0, 1, true, {})).ok());
  }
  {  // malformed text
    InitiatorNegotiator ini(Config());
    ini.Start();
    LoginResponse r = Resp(1, 3, true, {});
    r.text = "garbage";
    EXPECT_FALSE(ini.OnResponse(r).ok());
  }
}

TEST(InitiatorNegotiatorTest, Redirect) {
  InitiatorNegotiator ini(Config());
  ini.Start();
  LoginResponse r = Resp(1, 1, false, {{"TargetAddress", "10.0.0.9:3260,1"}});
  r.status_class = 1;
  r.status_detail = 1;
  auto next = ini.OnResponse(r);
  EXPECT_EQ(next.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ini.redirect_address(), "10.0.0.9:3260,1");
}

TEST(InitiatorNegotiatorTest, ChapAgainstScriptedTarget) {
  InitiatorLoginConfig c = Config();
  c.chap = {"user1", "initiator-secret"};
  c.chap_algorithms = {5};
  InitiatorNegotiator ini(c);
  InitiatorRequest req = ini.Start();
  EXPECT_EQ(req.csg, kSecurityNegotiation);
  EXPECT_EQ(Keys(req.text)["AuthMethod"], "CHAP,None");
  auto next = ini.OnResponse(Resp(0, 0, false, {{"AuthMethod", "CHAP"}}));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(Keys((*next)->text)["CHAP_A"], "5");
  EXPECT_FALSE((*next)->transit);
  std::string challenge(16, '\x5a');
  next = ini.OnResponse(
      Resp(0, 0, false, {{"CHAP_A", "5"}, {"CHAP_I", "0x2a"}, {"CHAP_C", EncodeHex(challenge)}}));
  ASSERT_TRUE(next.ok()) << next.status();
  auto k = Keys((*next)->text);
  EXPECT_EQ(k["CHAP_N"], "user1");
  EXPECT_EQ(k["CHAP_R"], EncodeHex(*ChapResponse(5, 42, "initiator-secret", challenge)));
  EXPECT_TRUE((*next)->transit);
  // A target that transits without authenticating is fine for one-way CHAP...
  next = ini.OnResponse(Resp(0, 1, true, {}));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((*next)->csg, kOperationalNegotiation);
}

TEST(InitiatorNegotiatorTest, MutualChapRequiresTargetAnswer) {
  InitiatorLoginConfig c = Config();
  c.chap = {"user1", "initiator-secret"};
  c.mutual_chap = {"target1", "target-secret"};
  c.chap_algorithms = {5};
  InitiatorNegotiator ini(c);
  ini.Start();
  ASSERT_TRUE(ini.OnResponse(Resp(0, 0, false, {{"AuthMethod", "CHAP"}})).ok());
  ASSERT_TRUE(
      ini.OnResponse(
             Resp(0, 0, false,
                  {{"CHAP_A", "5"}, {"CHAP_I", "1"}, {"CHAP_C", EncodeHex(std::string(16, 'x'))}}))
          .ok());
  // ...but not when the target had to prove itself.
  auto next = ini.OnResponse(Resp(0, 1, true, {}));
  EXPECT_EQ(next.status().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace iser::login

/*  sb_routes: the ingress's provider routes, one list for the ingress's
    router (ingress/sb_http.c) and for `switchboard doctor`, which prints
    the webhook URL of each (SB_PUBLIC_URL + SB_PATH_PREFIX + path) and
    where in the provider's console it goes.

    SB_ROUTE (ID, PATH, NAME, ALLOW, USE): ID the router's enum value, PATH
    the path after SB_PATH_PREFIX, NAME the route's metrics label, ALLOW
    the methods answered (for 405), USE where the URL is given to the
    provider. Define SB_ROUTE, include this file, undefine it.
*/
//  One route per entry: laid out by hand, clang-format leaves it
// clang-format off
SB_ROUTE (R_TWILIO_MESSAGES, "/twilio/messages", "twilio_messages", "POST",
          "Twilio number or Messaging Service: A message comes in (SmsUrl), also the WhatsApp sender's webhook")
SB_ROUTE (R_TWILIO_STATUS, "/twilio/status", "twilio_status", "POST",
          "Twilio: status callback URL (StatusCallback) of messages and calls")
SB_ROUTE (R_TWILIO_VOICE, "/twilio/voice", "twilio_voice", "POST",
          "Twilio number: A call comes in (VoiceUrl)")
SB_ROUTE (R_TWILIO_GATHER, "/twilio/gather", "twilio_gather", "POST",
          "Twilio: the <Gather> action of the ingress's own TwiML (set by the ingress, nothing to configure)")
SB_ROUTE (R_META_WHATSAPP, "/meta/whatsapp", "meta_whatsapp", "GET, POST",
          "Meta app: WhatsApp > Configuration > Callback URL (with META_VERIFY_TOKEN)")
// clang-format on

/*  sb_bsuid: the shape of WhatsApp business-scoped user ids (BSUIDs).

    Meta identifies a WhatsApp user to a business by a BSUID: a two-letter
    ISO 3166 country code, a period, and up to 128 alphanumerics
    ("US.13491208655302741918"); a parent BSUID, shared by linked business
    portfolios, has "ENT." after the country ("US.ENT.11815799212886844830").
    Phone numbers never hold a period, so a period after two letters is
    what tells a BSUID from a phone number.

    Pure functions, no state, safe from any thread.
*/
#ifndef SB_BSUID_H_INCLUDED
#define SB_BSUID_H_INCLUDED

#include <stdbool.h>

//  Most alphanumerics after the country (and "ENT.") Meta documents.
#define SB_BSUID_MAX_ID 128

//  True when text is a BSUID or a parent BSUID of the documented shape.
bool sb_bsuid_valid (const char *text);

//  True when text is meant as a BSUID rather than a phone number: two
//  ASCII letters and a period first, valid or not.
bool sb_bsuid_like (const char *text);

#endif

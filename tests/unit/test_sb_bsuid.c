/*  test_sb_bsuid: the BSUID shape check, with the examples of Meta's
    "Business-scoped user IDs" page and the ways a BSUID can be wrong.
*/
#include "sb_bsuid.h"

#include <stdio.h>
#include <string.h>

#include "sb_check.h"

int
main (void)
{
    //  Meta's examples: a BSUID and a parent BSUID.
    CHECK (sb_bsuid_valid ("US.13491208655302741918"));
    CHECK (sb_bsuid_valid ("US.ENT.11815799212886844830"));
    CHECK (sb_bsuid_valid ("BR.1502576394655843"));
    CHECK (sb_bsuid_valid ("US.ABC123XYZ"));  //  Twilio's changelog example
    //  128 alphanumerics is the most; 129 is one too many.
    char id[3 + 130] = "US.";
    memset (id + 3, '7', 128);
    id[3 + 128] = 0;
    CHECK (sb_bsuid_valid (id));
    id[3 + 128] = '7';
    id[3 + 129] = 0;
    CHECK (!sb_bsuid_valid (id));
    //  Malformed: no country, lower-case country, nothing after the
    //  period, a character that is not alphanumeric, a phone number.
    CHECK (!sb_bsuid_valid (NULL));
    CHECK (!sb_bsuid_valid (""));
    CHECK (!sb_bsuid_valid ("US."));
    CHECK (!sb_bsuid_valid ("US.ENT."));
    CHECK (!sb_bsuid_valid ("us.1349120865"));
    CHECK (!sb_bsuid_valid ("U.1349120865"));
    CHECK (!sb_bsuid_valid ("US.1349-1208"));
    CHECK (!sb_bsuid_valid ("US.1349.1208"));
    CHECK (!sb_bsuid_valid ("16505551234"));
    CHECK (!sb_bsuid_valid ("+16505551234"));
    //  What is meant as a BSUID (routes as one) versus a phone number.
    CHECK (sb_bsuid_like ("US.13491208655302741918"));
    CHECK (sb_bsuid_like ("us.bad!"));
    CHECK (!sb_bsuid_like ("16505551234"));
    CHECK (!sb_bsuid_like ("+1 650 555 1234"));
    CHECK (!sb_bsuid_like (NULL));
    CHECK (!sb_bsuid_like ("U"));
    if (s_failures) {
        fprintf (stderr, "test_sb_bsuid: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}

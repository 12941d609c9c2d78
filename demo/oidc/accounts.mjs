// The demo provider's people: three synthetic accounts, one password for all.
//
// LA staff get the claims an LA's own provider (Entra ID, say) would give them:
// `roles` as Entra ID emits its app roles, plus the organisation, which in
// production comes from the provider the LA is configured with, not a claim.
// The clinician gets NHS CIS2's claim names for a smartcard user who selected
// her one role (docs/sign-in.md says which CIS2 returns where). The clinician
// is the same person as `cpis demo-id-token`'s demo nurse (cpis/demo_identity.py).

export const DEMO_LA = { code: 'XDM01', name: 'Demoshire County Council' };
export const DEMO_ED = {
  code: 'XED01',
  name: 'Demoshire General Hospital Emergency Department',
};
export const DEFAULT_PASSWORD = 'demo-password';

const NURSE_ROLE_CODE = 'S8000:G8000:R8001';
const NURSE_ROLE_NAME = '"Clinical":"Clinical Provision":"Nurse Access Role"';

export const ACCOUNTS = [
  {
    login: 'social.worker',
    role: 'caseworker',
    kind: 'la',
    orgCode: DEMO_LA.code,
    summary: `a social worker (caseworker) at ${DEMO_LA.name} (${DEMO_LA.code})`,
    claims: {
      sub: 'demo-la-0001',
      name: 'Sam Demoworker',
      given_name: 'Sam',
      family_name: 'Demoworker',
      preferred_username: 'social.worker@demoshire.example',
      email: 'social.worker@demoshire.example',
      roles: ['caseworker'],
      org_code: DEMO_LA.code,
      org_name: DEMO_LA.name,
    },
  },
  {
    login: 'manager',
    role: 'manager',
    kind: 'la',
    orgCode: DEMO_LA.code,
    summary: `a team manager (manager) at ${DEMO_LA.name} (${DEMO_LA.code})`,
    claims: {
      sub: 'demo-la-0002',
      name: 'Morgan Demomanager',
      given_name: 'Morgan',
      family_name: 'Demomanager',
      preferred_username: 'manager@demoshire.example',
      email: 'manager@demoshire.example',
      roles: ['manager'],
      org_code: DEMO_LA.code,
      org_name: DEMO_LA.name,
    },
  },
  {
    login: 'clinician',
    role: 'clinician',
    kind: 'health',
    orgCode: DEMO_ED.code,
    summary: `an emergency department nurse (clinician) at ${DEMO_ED.name} (${DEMO_ED.code})`,
    // What CIS2 records of a smartcard sign-in (its "ACR and AMR values").
    acr: 'AAL3_ANY',
    amr: ['N3_SMARTCARD'],
    claims: {
      sub: '555000000101',
      nhsid_useruid: '555000000101',
      uid: '555000000101',
      name: 'Casey Demonurse',
      given_name: 'Casey',
      family_name: 'Demonurse',
      id_assurance_level: '3',
      authentication_assurance_level: '3',
      selected_roleid: '555000000201',
      nhsid_nrbac_roles: [
        {
          person_orgid: '5550000002011',
          person_roleid: '555000000201',
          org_code: DEMO_ED.code,
          role_name: NURSE_ROLE_NAME,
          role_code: NURSE_ROLE_CODE,
        },
      ],
      nhsid_user_orgs: [{ org_code: DEMO_ED.code, org_name: DEMO_ED.name }],
    },
  },
];

// Which scope releases which claim, in the ID token and at userinfo alike
// (conformIdTokenClaims is off in server.mjs). `openid` carries what Entra ID
// puts in every ID token (`roles`) and CIS2 its assurance levels and how the
// person signed in (`acr`, `amr`; oidc-provider sends these only when asked
// for, unless a scope names them); the CIS2 scopes are CIS2's own names.
export const SCOPE_CLAIMS = {
  openid: [
    'sub',
    'acr',
    'amr',
    'roles',
    'org_code',
    'org_name',
    'id_assurance_level',
    'authentication_assurance_level',
  ],
  profile: ['name', 'given_name', 'family_name', 'preferred_username', 'nhsid_useruid', 'uid'],
  email: ['email'],
  selectedrole: ['selected_roleid'],
  nationalrbacaccess: ['nhsid_nrbac_roles'],
  associatedorgs: ['nhsid_user_orgs'],
};

export function findByLogin(login) {
  const wanted = String(login ?? '').trim().toLowerCase();
  return ACCOUNTS.find((account) => account.login === wanted);
}

export function findBySub(sub) {
  return ACCOUNTS.find((account) => account.claims.sub === sub);
}
